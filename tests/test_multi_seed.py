"""Several seeds in one vmapped program: independent of each other, equal to one-by-one runs,
one ordinary run directory per seed, resumable, and a diverging seed does not stop the others."""

from __future__ import annotations

import json
import shutil
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from offrl.algos import bc, iql, td3_bc
from offrl.errors import ConfigError
from offrl.train.checkpoint import checkpoint_files, read_payload
from offrl.train.offline import TrainConfig, train_offline
from offrl.train.multi_seed import train_seeds
from offrl.train.policy import load_policy
from offrl.train.initial_state import init_state
from reliability_helpers import assert_same_run, pendulum_shaped_dataset, records

TRAIN = TrainConfig(steps=300, eval_every=150, log_every=50, checkpoint_every=100, eval_episodes=2)


def final_state(run_dir: Path) -> list[np.ndarray]:
    payload = read_payload(checkpoint_files(run_dir / "checkpoints")[-1])
    return [np.asarray(leaf) for leaf in jax.tree.leaves(payload["state"])]


def metric_values(run_dir: Path) -> np.ndarray:
    lines = records(run_dir / "metrics.jsonl")
    return np.array([[value for key, value in sorted(line.items()) if isinstance(value, float)] for line in lines])


@pytest.mark.parametrize("algo, axis", [(td3_bc, "vmap"), (td3_bc, "map"), (iql, "vmap")], ids=["td3bc-vmap", "td3bc-map", "iql-vmap"])
def test_seeds_in_one_program_equal_the_same_seeds_run_one_by_one(algo, axis, tmp_path):
    dataset = pendulum_shaped_dataset()
    config = algo.Config(hidden_dims=(32, 32), batch_size=64)
    seeds = [3, 7, 11]
    grouped = train_seeds(algo, config, dataset, TRAIN, tmp_path / "group", seeds, progress=False, axis=axis)
    assert grouped[0].summary["seed_axis"] == axis
    assert [result.summary["status"] for result in grouped] == ["finished"] * 3
    for seed in seeds:
        single = train_offline(algo, config, dataset, TrainConfig(**{**TRAIN.__dict__, "seed": seed}),
                               tmp_path / f"single{seed}", progress=False)
        in_group = tmp_path / "group" / f"seed_{seed}"
        for grouped_leaf, single_leaf in zip(final_state(in_group), final_state(single.run_dir), strict=True):
            np.testing.assert_allclose(grouped_leaf, single_leaf, rtol=2e-3, atol=2e-4)
        np.testing.assert_allclose(metric_values(in_group), metric_values(single.run_dir), rtol=2e-3, atol=2e-4)
        grouped_evals = [line["return_mean"] for line in records(in_group / "eval.jsonl")]
        single_evals = [line["return_mean"] for line in records(single.run_dir / "eval.jsonl")]
        np.testing.assert_allclose(grouped_evals, single_evals, rtol=1e-2)
    # Seeds are not coupled: different seeds end with different parameters.
    first, second = final_state(tmp_path / "group" / "seed_3"), final_state(tmp_path / "group" / "seed_7")
    assert any(not np.allclose(a, b) for a, b in zip(first, second) if a.dtype.kind == "f" and a.size > 1)


def test_each_seed_writes_an_ordinary_run_directory(tmp_path):
    dataset = pendulum_shaped_dataset()
    results = train_seeds(bc, bc.Config(hidden_dims=(32, 32), batch_size=64), dataset, TRAIN, tmp_path / "runs", [0, 1],
                          progress=False)
    for seed, result in zip([0, 1], results):
        assert result.run_dir == tmp_path / "runs" / f"seed_{seed}"
        config = json.loads((result.run_dir / "config.json").read_text())
        summary = json.loads((result.run_dir / "summary.json").read_text())
        assert config["train"]["seed"] == seed
        assert summary["status"] == "finished" and summary["seeds_in_program"] == 2
        assert [line["step"] for line in records(result.run_dir / "eval.jsonl")] == [150, 300]
        observations = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
        np.testing.assert_allclose(load_policy(result.run_dir)(observations), result.policy(observations), atol=1e-6)


def test_an_interrupted_vmapped_group_resumes_bit_identically(tmp_path):
    """A vmapped group stopped mid-run (a deterministic stop point: Ctrl-C raised from `on_log` at
    step 250, after the step-200 checkpoints and the step-150 evaluation), then resumed, ends
    bit-identical to the uninterrupted group: every seed's final parameters, optimiser state and
    key, metrics.jsonl, eval.jsonl and scores. Then a kill between two seeds' checkpoint writes
    (seed 0 has step 300, seed 1 only 200): the group resumes from the step they share, equally
    exact. On CPU the resumed program is the same compiled program on the same inputs, so the
    equality is exact, not a tolerance."""
    dataset = pendulum_shaped_dataset()
    config = td3_bc.Config(hidden_dims=(32, 32), batch_size=64)
    seeds = [0, 1]
    whole = train_seeds(td3_bc, config, dataset, TRAIN, tmp_path / "whole", seeds, progress=False, axis="vmap")
    assert whole[0].summary["seed_axis"] == "vmap"

    def stop_at_250(record):
        if record["step"] == 250:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_seeds(td3_bc, config, dataset, TRAIN, tmp_path / "stopped", seeds, progress=False, axis="vmap",
                    on_log=stop_at_250)
    for seed in seeds:
        run = tmp_path / "stopped" / f"seed_{seed}"
        assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"
        assert [p.name for p in checkpoint_files(run / "checkpoints")][-1] == "step_000000200.msgpack"
    results = train_seeds(td3_bc, config, dataset, TRAIN, tmp_path / "stopped", seeds, progress=False, axis="vmap",
                          resume=True)
    for seed, result in zip(seeds, results):
        assert result.summary["status"] == "finished" and result.summary["resumed_from_steps"] == [200]
        assert_same_run(tmp_path / "stopped" / f"seed_{seed}", tmp_path / "whole" / f"seed_{seed}")

    shutil.copytree(tmp_path / "whole", tmp_path / "killed")
    for seed, keep in ((0, 300), (1, 200)):
        run = tmp_path / "killed" / f"seed_{seed}"
        for path in checkpoint_files(run / "checkpoints"):
            if int(path.stem.split("_")[1]) > keep:
                path.unlink()
        summary = json.loads((run / "summary.json").read_text())
        (run / "summary.json").write_text(json.dumps({"status": "running", "started_at": summary["started_at"]}))
    results = train_seeds(td3_bc, config, dataset, TRAIN, tmp_path / "killed", seeds, progress=False, axis="vmap",
                          resume=True)
    for seed, result in zip(seeds, results):
        assert result.summary["status"] == "finished" and result.summary["resumed_from_steps"] == [200]
        assert_same_run(tmp_path / "killed" / f"seed_{seed}", tmp_path / "whole" / f"seed_{seed}")


def seed_poisoned_bc(from_update: int) -> types.ModuleType:
    """BC that turns NaN from `from_update` on, but only for seeds whose first kernel sums above 0."""
    module = types.ModuleType("seed_poisoned_bc")
    module.NAME, module.Config, module.init, module.act = "seed-poisoned-bc", bc.Config, bc.init, bc.act

    def update(state, batch, config):
        state, metrics = bc.update(state, batch, config)
        kernel_sum = jnp.sum(jax.tree.leaves(state.actor.params)[1])
        poison = jnp.where((state.actor.step >= from_update) & (kernel_sum > 0), jnp.nan, 1.0)
        actor = state.actor.replace(params=jax.tree.map(lambda p: p * poison, state.actor.params))
        return state.replace(actor=actor), {"actor_loss": metrics["actor_loss"] * poison}

    module.update = update
    return module


def test_a_diverging_seed_stops_alone_and_the_others_finish(tmp_path):
    dataset = pendulum_shaped_dataset()
    config = bc.Config(hidden_dims=(32, 32), batch_size=64)
    algo = seed_poisoned_bc(from_update=120)
    seeds = list(range(6))
    sums = [float(jnp.sum(jax.tree.leaves(init_state(bc, jax.random.split(jax.random.PRNGKey(seed))[0], dataset.spec, config).actor.params)[1]))
            for seed in seeds]
    poisoned = [seed for seed, total in zip(seeds, sums) if total > 0]
    assert 0 < len(poisoned) < len(seeds), "the test needs both kinds of seeds"
    results = train_seeds(algo, config, dataset, TRAIN, tmp_path / "runs", seeds, progress=False)
    for seed, result in zip(seeds, results):
        if seed in poisoned:
            assert result.summary["status"] == "diverged" and result.policy is None
            assert result.summary["divergence"]["step"] == 150
            assert [p.name for p in checkpoint_files(result.run_dir / "checkpoints")] == ["step_000000100.msgpack"]
        else:
            assert result.summary["status"] == "finished"
            assert [line["step"] for line in records(result.run_dir / "metrics.jsonl")][-1] == 300


def test_seeds_must_be_distinct_and_the_directories_new(tmp_path):
    dataset = pendulum_shaped_dataset()
    config = bc.Config(hidden_dims=(32, 32), batch_size=64)
    with pytest.raises(ConfigError, match="--seed-axis is 'pmap'"):
        train_seeds(bc, config, dataset, TRAIN, tmp_path / "runs", [1, 2], progress=False, axis="pmap")
    with pytest.raises(ConfigError, match="distinct seeds"):
        train_seeds(bc, config, dataset, TRAIN, tmp_path / "runs", [1, 1], progress=False)
    (tmp_path / "runs" / "seed_2").mkdir(parents=True)
    (tmp_path / "runs" / "seed_2" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="seed_2' already exists"):
        train_seeds(bc, config, dataset, TRAIN, tmp_path / "runs", [1, 2], progress=False)
    assert not (tmp_path / "runs" / "seed_1").exists()  # nothing half-written
    assert (tmp_path / "runs" / "seed_2" / "keep.txt").read_text() == "mine"


def test_cli_trains_seeds_in_one_program_and_resumes_the_group(tmp_path, capsys):
    from offrl.cli import main
    from offrl.data.d4rl_io import write_npz

    path = str(write_npz(pendulum_shaped_dataset(), tmp_path / "pendulum.npz"))
    flags = ["--steps", "200", "--eval-every", "100", "--log-every", "50", "--eval-episodes", "1",
             "--hidden-dims", "32", "32", "--batch-size", "64", "--no-progress"]
    assert main(["train", "bc", "--dataset", path, "--seeds", "3", "--seed", "4", "--run-dir", str(tmp_path / "runs"), *flags]) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["seed_4", "seed_5", "seed_6"]
    finals = [json.loads((tmp_path / "runs" / f"seed_{s}" / "summary.json").read_text())["final_normalized_score"] for s in (4, 5, 6)]
    assert f"final normalized score: {np.mean(finals):.1f} ± {np.std(finals):.1f} over 3 seeds" in out
    # Resuming a finished group trains nothing and reports the same numbers.
    assert main(["train", "bc", "--resume", str(tmp_path / "runs"), "--no-progress"]) == 0
    assert f"{np.mean(finals):.1f} ± {np.std(finals):.1f}" in capsys.readouterr().out
    assert main(["train", "bc", "--dataset", path, "--seeds", "0", "--run-dir", str(tmp_path / "none"), *flags]) == 2
    assert "--seeds is 0" in capsys.readouterr().err
