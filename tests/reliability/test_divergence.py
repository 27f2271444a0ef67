"""Divergence: NaN/inf losses or parameters, or |Q| beyond --max-abs-q, stop the run with one
sentence naming the step and the quantity, status "diverged", and the last good checkpoint kept."""

from __future__ import annotations

import json
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from offrl.algos import bc
from offrl.cli import main
from offrl.data.d4rl_io import write_npz
from offrl.train.checkpoint import checkpoint_files, read_payload
from offrl.train.offline import DivergenceError, TrainConfig, train_offline

from reliability_helpers import pendulum_shaped_dataset, records


def poisoned_bc(from_update: int) -> types.ModuleType:
    """BC whose parameters and loss turn NaN from its `from_update`-th update on."""
    module = types.ModuleType("poisoned_bc")
    module.NAME, module.Config, module.init, module.act = "poisoned-bc", bc.Config, bc.init, bc.act

    def update(state, batch, config):
        state, metrics = bc.update(state, batch, config)
        poison = jnp.where(state.actor.step >= from_update, jnp.nan, 1.0)
        actor = state.actor.replace(params=jax.tree.map(lambda p: p * poison, state.actor.params))
        return state.replace(actor=actor), {"actor_loss": metrics["actor_loss"] * poison}

    module.update = update
    return module


@pytest.mark.parametrize("from_update, quantity", [
    (101, "metric 'actor_loss'"),  # every update of the chunk after step 100 is NaN: the loss says so
    (120, "state .actor.params['params']"),  # a nanmean over the chunk hides it: the parameters say so
])
def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, from_update, quantity):
    algo = poisoned_bc(from_update)
    train = TrainConfig(steps=300, log_every=50, checkpoint_every=100, eval_every=0, eval_episodes=1)
    with pytest.raises(DivergenceError) as info:
        train_offline(algo, bc.Config(hidden_dims=(32, 32), batch_size=64), pendulum_shaped_dataset(), train,
                      tmp_path / "run", progress=False)
    error = info.value
    assert error.step == 150 and error.quantity.startswith(quantity) and np.isnan(error.value)
    assert "after step 100 (by step 150)" in str(error) and "step_000000100.msgpack" in str(error)
    assert str(error).count(". ") == 0  # one sentence
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["divergence"]["step"] == 150
    # Nothing from the diverged updates is written: no metrics line, no checkpoint.
    assert [r["step"] for r in records(tmp_path / "run" / "metrics.jsonl")] == [50, 100]
    assert [p.name for p in checkpoint_files(tmp_path / "run" / "checkpoints")] == ["step_000000100.msgpack"]
    kept = read_payload(tmp_path / "run" / "checkpoints" / "step_000000100.msgpack")
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(kept["state"]) if np.asarray(leaf).dtype.kind == "f")


def test_q_beyond_the_bound_exits_3_with_one_sentence_and_cannot_be_resumed(tmp_path, capsys):
    data = str(write_npz(pendulum_shaped_dataset(), tmp_path / "data.npz"))
    run = tmp_path / "run"
    code = main(["train", "td3bc", "--dataset", data, "--run-dir", str(run), "--steps", "100", "--log-every", "50",
                 "--eval-every", "0", "--eval-episodes", "1", "--hidden-dims", "32", "32", "--batch-size", "64",
                 "--max-abs-q", "1e-9", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 3
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("offrl: error: Training diverged"), err
    assert "q_mean" in lines[0] and "by step 50" in lines[0] and "--max-abs-q" in lines[0]
    assert json.loads((run / "summary.json").read_text())["status"] == "diverged"
    assert checkpoint_files(run / "checkpoints") == []

    assert main(["train", "td3bc", "--resume", str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "diverged by step 50" in err and len(err.strip().splitlines()) == 1


def test_max_abs_q_must_be_positive(tmp_path, capsys):
    with pytest.raises(Exception, match="--max-abs-q"):
        TrainConfig(max_abs_q=0.0).validate()
    with pytest.raises(Exception, match="--max-abs-q"):
        TrainConfig(max_abs_q=float("nan")).validate()
