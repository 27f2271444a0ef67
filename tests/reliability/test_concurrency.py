"""Concurrent writers: two processes never interleave one run directory or one Minari dataset."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dataset_helpers import assert_same_arrays, make_random_dataset
from offrl.data import minari_io
from offrl.errors import DatasetError
from reliability_helpers import claim_run_directory, run_in_processes, try_open_run_directory, write_minari_repeatedly


def test_two_runs_in_one_directory_one_wins_the_other_is_refused(tmp_path):
    path = str(tmp_path / "run")
    first, second, opened = run_in_processes(
        [claim_run_directory, claim_run_directory, try_open_run_directory],
        lambda i: (path, "ab"[i]) if i < 2 else (path,), parties=3,
    )
    outcomes = [first, second]
    assert sorted(o.split(":")[0] for o in outcomes) == ["ok", "refused"], outcomes
    winner = "a" if first == "ok" else "b"
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == {"tag": winner}
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(200)) and {r["tag"] for r in lines} == {winner}
    # A resume attempted while the winner still writes is refused too.
    assert opened.startswith("refused") and "in use by another offrl process" in opened, opened


def test_two_writers_of_one_minari_dataset_leave_one_complete_dataset(tmp_path):
    from offrl.data.minari_io import read_minari

    outcomes = run_in_processes([write_minari_repeatedly] * 2, lambda i: (str(tmp_path), i + 1, 4), parties=2)
    assert all(isinstance(o, list) for o in outcomes), outcomes
    assert not [o for writer in outcomes for o in writer if o.startswith("CRASH")], outcomes
    assert any(o == "ok" for writer in outcomes for o in writer)
    loaded = read_minari(tmp_path / "race" / "data-v0")
    matches = 0
    for seed in (1, 2):
        try:
            assert_same_arrays(loaded, make_random_dataset([5 + seed, 7, 3 * seed], seed=seed))
            matches += 1
        except AssertionError:
            pass
    assert matches == 1
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".offrl-tmp")]
    assert leftovers == [], leftovers


# Deterministic versions of the race: the other writer acts at a chosen moment between our
# checks and our rename (patched in), never by timing.
OURS, THEIRS = make_random_dataset([5, 7, 4], seed=1), make_random_dataset([6, 3, 8], seed=2)


def assert_installed(root: Path, expected) -> None:
    assert_same_arrays(minari_io.read_minari(root / "race" / "data-v0"), expected)
    leftovers = [p.name for p in root.iterdir() if p.name.startswith(".offrl-tmp")]
    assert leftovers == [], leftovers


def another_writer_just_before_the_rename(monkeypatch, root: Path) -> None:
    """THEIRS is written, complete, after our checks and just before our rename."""
    real = minari_io._ensure_namespaces  # the last step before the rename

    def then_another_writer(*args):
        real(*args)
        monkeypatch.setattr(minari_io, "_ensure_namespaces", real)
        minari_io.write_minari(THEIRS, "race/data-v0", root=root, overwrite=True)

    monkeypatch.setattr(minari_io, "_ensure_namespaces", then_another_writer)


def test_a_dataset_written_meanwhile_is_refused_in_one_sentence(tmp_path, monkeypatch):
    another_writer_just_before_the_rename(monkeypatch, tmp_path)
    with pytest.raises(DatasetError, match=r"'race/data-v0' already exists at .*overwrite=True") as info:
        minari_io.write_minari(OURS, "race/data-v0", root=tmp_path)
    assert "\n" not in str(info.value)
    assert_installed(tmp_path, THEIRS)


def test_overwrite_replaces_a_dataset_written_meanwhile(tmp_path, monkeypatch):
    another_writer_just_before_the_rename(monkeypatch, tmp_path)
    minari_io.write_minari(OURS, "race/data-v0", root=tmp_path, overwrite=True)
    assert_installed(tmp_path, OURS)


def test_overwrite_when_the_old_dataset_is_moved_away_meanwhile(tmp_path, monkeypatch):
    """We found the old dataset; another writer moves it aside (its own replace) before we do."""
    minari_io.write_minari(THEIRS, "race/data-v0", root=tmp_path)
    final, real_rename, moves = tmp_path / "race" / "data-v0", os.rename, []

    def rename(source, target):
        if Path(source) == final and not moves:  # our move-aside of the old dataset
            moves.append(real_rename(final, tmp_path / "elsewhere"))
        return real_rename(source, target)

    monkeypatch.setattr(minari_io.os, "rename", rename)
    minari_io.write_minari(OURS, "race/data-v0", root=tmp_path, overwrite=True)
    assert moves and (tmp_path / "elsewhere").is_dir()
    assert_installed(tmp_path, OURS)


def test_overwrite_when_another_dataset_lands_after_the_old_one_is_moved_aside(tmp_path, monkeypatch):
    """The old dataset is moved aside, then another writer installs theirs before our rename: we
    replace theirs (overwrite: the last writer wins), and every set-aside copy is cleaned up."""
    minari_io.write_minari(make_random_dataset([4, 4], seed=3), "race/data-v0", root=tmp_path)
    final, real_rename, landed = tmp_path / "race" / "data-v0", os.rename, []

    def rename(source, target):
        if Path(target) == final and Path(source).name.startswith(".offrl-tmp-") and not landed and not final.exists():
            monkeypatch.setattr(minari_io.os, "rename", real_rename)
            landed.append(minari_io.write_minari(THEIRS, "race/data-v0", root=tmp_path))
            monkeypatch.setattr(minari_io.os, "rename", rename)
        return real_rename(source, target)

    monkeypatch.setattr(minari_io.os, "rename", rename)
    minari_io.write_minari(OURS, "race/data-v0", root=tmp_path, overwrite=True)
    assert landed
    assert_installed(tmp_path, OURS)
