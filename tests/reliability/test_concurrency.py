"""Concurrent writers: two processes never interleave one run directory or one Minari dataset."""

from __future__ import annotations

import json

from conftest import assert_same_arrays, make_random_dataset
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
