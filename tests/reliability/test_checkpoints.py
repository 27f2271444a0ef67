"""Verified checkpoints: a truncated, altered or half-written checkpoint is named and skipped."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

from offrl.algos import get_algorithm
from offrl.errors import ConfigError
from offrl.train import checkpoint as ckpt
from offrl.types import Spec
from offrl.train.initial_state import init_state


@pytest.fixture(scope="module")
def states():
    algo = get_algorithm("bc")
    config = algo.Config(hidden_dims=(32, 32), batch_size=64)
    template = init_state(algo, jax.random.PRNGKey(0), Spec(3, 1), config)
    other = init_state(algo, jax.random.PRNGKey(1), Spec(3, 1), config)
    return template, other


def leaves_equal(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def write_two(directory, states):
    template, other = states
    ckpt.save_checkpoint(directory, 100, template, jax.random.PRNGKey(5), {"evals": "[]", "train_seconds": 1.5})
    return ckpt.save_checkpoint(directory, 200, other, jax.random.PRNGKey(6), {"evals": "[1]", "train_seconds": 2.5})


def test_round_trip_is_exact_and_carries_the_engine_state(tmp_path, states):
    template, other = states
    path = write_two(tmp_path, states)
    loaded = ckpt.load_checkpoint_full(path, template)
    assert loaded.step == 200 and leaves_equal(loaded.state, other)
    np.testing.assert_array_equal(loaded.key, jax.random.PRNGKey(6))
    assert loaded.engine == {"evals": "[1]", "train_seconds": 2.5}


@pytest.mark.parametrize("damage", ["truncate-half", "truncate-header", "empty", "flip-payload", "flip-digest", "not-offrl"])
def test_damaged_checkpoint_is_reported_and_the_previous_one_used(tmp_path, states, damage):
    template, _ = states
    path = write_two(tmp_path, states)
    data = bytearray(path.read_bytes())
    if damage == "truncate-half":
        data = data[: len(data) // 2]
    elif damage == "truncate-header":
        data = data[:10]
    elif damage == "empty":
        data = b""
    elif damage == "flip-payload":
        data[-7] ^= 0x40
    elif damage == "flip-digest":
        data[len(ckpt.MAGIC) + 3] ^= 0x01
    else:
        data = b"\x82\xa5state\x80\xa4step\x00"  # msgpack without offrl's header
    path.write_bytes(bytes(data))

    with pytest.raises(ckpt.CorruptCheckpointError, match="step_000000200.msgpack"):
        ckpt.read_payload(path)
    with pytest.warns(UserWarning, match="step_000000200.msgpack"):
        loaded = ckpt.latest_valid_checkpoint(tmp_path, template)
    assert loaded.step == 100 and leaves_equal(loaded.state, template)


def test_quarantine_renames_the_bad_file_so_nothing_picks_it_later(tmp_path, states):
    template, _ = states
    path = write_two(tmp_path, states)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.warns(UserWarning):
        assert ckpt.latest_valid_checkpoint(tmp_path, template, quarantine=True).step == 100
    assert ckpt.latest_checkpoint(tmp_path).name == "step_000000100.msgpack"
    assert (tmp_path / "step_000000200.msgpack.corrupt").exists()


def test_no_good_checkpoint_is_a_clear_config_error(tmp_path, states):
    template, _ = states
    write_two(tmp_path, states)
    for path in ckpt.checkpoint_files(tmp_path):
        path.write_bytes(path.read_bytes()[:100])
    with pytest.warns(UserWarning), pytest.raises(ConfigError, match="No valid checkpoint .*step_000000200.msgpack, step_000000100.msgpack"):
        ckpt.latest_valid_checkpoint(tmp_path, template)
    assert ckpt.latest_valid_checkpoint(tmp_path / "missing", template) is None


def test_a_checkpoint_of_another_shape_is_refused(tmp_path, states):
    path = write_two(tmp_path, states)
    algo = get_algorithm("bc")
    wider = init_state(algo, jax.random.PRNGKey(0), Spec(3, 1), algo.Config(hidden_dims=(64, 64), batch_size=64))
    with pytest.raises(ConfigError, match="does not fit"):
        ckpt.load_checkpoint(path, wider)


def test_kill_during_a_checkpoint_write_keeps_the_previous_one(tmp_path, states, monkeypatch):
    """The write goes to a temporary file renamed into place: a crash before the rename leaves
    the old checkpoint (and a stray temporary file, which nothing reads)."""
    template, other = states
    ckpt.save_checkpoint(tmp_path, 100, template, jax.random.PRNGKey(5))

    def killed(*args):
        raise KeyboardInterrupt  # stands for a kill between the write and the rename

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(tmp_path, 100, other, jax.random.PRNGKey(6))
    monkeypatch.undo()
    # A SIGKILL cannot clean up: leave a half-written temporary file, as such a kill would.
    (tmp_path / ".step_000000200.msgpack.x1y2.tmp").write_bytes(ckpt.MAGIC + b"0123")
    assert [p.name for p in ckpt.checkpoint_files(tmp_path)] == ["step_000000100.msgpack"]
    loaded = ckpt.latest_valid_checkpoint(tmp_path, template)
    assert loaded.step == 100 and leaves_equal(loaded.state, template)
