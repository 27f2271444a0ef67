"""Issue 17 end to end through the CLI, with no simulator anywhere: CSV logs -> datasets import ->
train (validation episodes held out) -> ope (FQE, WPDIS, DR; --json) -> select -> export (ONNX and
npz), the exports loaded in a fresh process without JAX; and the bad inputs of each step."""

from __future__ import annotations

import csv
import json

import jax
import numpy as np

from offrl.algos import get_algorithm
from offrl.cli import main
from offrl.data.d4rl_io import write_npz
from offrl.train.checkpoint import save_checkpoint
from offrl.train.configs import config_to_json
from offrl.train.policy import load_policy
from offrl.train.run_dir import RunDirectory
from offrl.types import Spec
from offrl.train.initial_state import init_state
from export_helpers import assert_runs_without_jax
from ope_helpers import linear_task_dataset


def write_logs(path) -> None:
    dataset = linear_task_dataset(episodes=16, length=25)
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["run", "position", "force", "cost", "cut"])
        for episode in range(dataset.num_episodes):
            for row in range(dataset.episode_starts[episode], dataset.episode_ends[episode]):
                writer.writerow([f"r{episode}", dataset.observations[row, 0], dataset.actions[row, 0], dataset.rewards[row],
                                 int(dataset.timeouts[row])])


def test_logs_to_deployed_policy_without_a_simulator(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_logs(tmp_path / "logs.csv")
    assert main(["datasets", "import", "logs.csv", "--obs-cols", "position", "--action-cols", "force", "--reward-col", "cost",
                 "--episode-col", "run", "--timeout-col", "cut", "--action-low", "-1", "--action-high", "1"]) == 0
    assert main(["train", "td3bc", "--dataset", "logs", "--steps", "200", "--log-every", "100", "--eval-every", "100",
                 "--checkpoint-every", "100", "--validation-fraction", "0.25", "--hidden-dims", "16", "16",
                 "--batch-size", "32", "--run-dir", "run", "--no-progress"]) == 0
    assert "no online evaluation" in capsys.readouterr().out
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["online_evaluation"] is False and record["validation"]["num_episodes"] == 4

    estimator_flags = ["--fqe-steps", "300", "--fqe-hidden-dims", "16", "16", "--bootstrap", "2", "--discount", "0.9"]
    assert main(["ope", "run", "--method", "fqe,wpdis,dr", "--json", "--behaviour-steps", "200", *estimator_flags]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    policies = [line for line in lines if line["checkpoint_step"] is not None]
    assert {(p["method"], p["checkpoint_step"]) for p in policies} == {(m, s) for m in ("fqe", "wpdis", "dr") for s in (100, 200)}
    for line in lines:
        assert {"method", "estimate", "low", "high", "checkpoint_step"} <= set(line) and line["low"] <= line["high"]
    assert lines[-1]["method"] == "behaviour-mc" and lines[-1]["episodes"] == 4  # scored on the 4 held-out episodes

    assert main(["select", "run", "--by", "fqe", "--json", *estimator_flags]) == 0
    selection = json.loads(capsys.readouterr().out)
    assert selection["chosen"]["checkpoint_step"] in (100, 200)
    assert selection["choice_by_criterion"]["validation-td"] is not None and selection["choice_by_criterion"]["online"] is None
    assert main(["select", "run", "--by", "online"]) == 2
    assert "No candidate has a 'online' value" in capsys.readouterr().err

    assert main(["export", "run", "--format", "onnx", "--out", "policy.onnx"]) == 0
    assert main(["export", "run", "--format", "npz", "--out", "policy.npz"]) == 0
    assert "max abs error" in capsys.readouterr().out
    policy = load_policy("run")
    observations = np.random.default_rng(0).uniform(-3, 3, (1000, 1)).astype(np.float32)
    np.save(tmp_path / "observations.npy", observations)
    np.save(tmp_path / "expected.npy", policy(observations))
    assert_runs_without_jax(tmp_path)

    # Bad input: another dataset than the run's, an export that cannot be, a missing output directory.
    write_npz(linear_task_dataset(episodes=16, length=25, seed=1), tmp_path / "other.npz")
    assert main(["ope", "run", "--dataset", "other.npz", *estimator_flags]) == 2
    error = capsys.readouterr().err
    assert "is not the dataset run 'run' was trained on (fingerprint" in error and error.count("\n") == 1
    assert main(["export", "run", "--out", "missing/policy.onnx"]) == 2
    assert "directory 'missing' does not exist" in capsys.readouterr().err


def test_exporting_a_decision_transformer_is_refused_in_one_sentence(tmp_path, capsys):
    algo = get_algorithm("dt")
    config = algo.Config()
    record = {"algorithm": "dt", "algorithm_config": config_to_json(config),
              "spec": {"observation_dim": 1, "action_dim": 1},
              "normalizer": {"observation_mean": [0.0], "observation_std": [1.0], "action_low": [-1.0], "action_high": [1.0],
                             "reward_scale": 1.0}}
    run = RunDirectory.create(tmp_path / "dt-run", record)
    run.unlock()
    state = init_state(algo, jax.random.PRNGKey(0), Spec(1, 1), config)
    save_checkpoint(run.checkpoints, 1, state, jax.random.PRNGKey(1), {})
    assert main(["export", str(tmp_path / "dt-run"), "--out", str(tmp_path / "dt.onnx")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "dt acts on the episode's history" in error
    assert not (tmp_path / "dt.onnx").exists()
