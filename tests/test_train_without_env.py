"""Training on a dataset that names no environment: losses and Q statistics, checkpoints, resume,
no rollouts (the run says so), and held-out validation episodes that are never trained on."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from offrl.algos import get_algorithm
from offrl.cli import main
from offrl.data.d4rl_io import write_npz
from offrl.data.validation_split import split_episodes, validation_episodes
from offrl.errors import ConfigError
from offrl.train.checkpoint import load_checkpoint
from offrl.train.offline import TrainConfig, prepare, resume_offline, train_offline
from offrl.train.run_dir import RunDirectory
from offrl.train.initial_state import init_state
from dataset_helpers import make_random_dataset

SMALL = {"hidden_dims": (16, 16), "batch_size": 32}


def env_free_dataset():
    dataset = make_random_dataset([30] * 10, ends=["timeout"] * 10)
    assert dataset.metadata.env_id is None
    return dataset


def test_trains_checkpoints_and_resumes_bit_identically_without_an_env(tmp_path):
    algo = get_algorithm("td3bc")
    config = algo.Config(**SMALL)
    train = TrainConfig(steps=200, log_every=50, eval_every=100, checkpoint_every=100, validation_fraction=0.2)
    result = train_offline(algo, config, env_free_dataset(), train, tmp_path / "run", progress=False)
    run = RunDirectory.open(result.run_dir, lock=False)
    summary, record = run.read_summary(), run.read_config()
    assert summary["status"] == "finished" and summary["online_evaluation"] is False
    assert record["env_id"] is None and record["online_evaluation"] is False
    assert not (result.run_dir / "eval.jsonl").exists()
    metrics = run.read_records("metrics.jsonl")
    assert [m["step"] for m in metrics] == [50, 100, 150, 200] and all(np.isfinite(m["q_mean"]) for m in metrics)
    assert [v["step"] for v in run.read_records("validation.jsonl")] == [100, 200]
    last = result.run_dir / "checkpoints" / "step_000000200.msgpack"
    template = init_state(algo, jax.random.PRNGKey(0), result.policy.spec, config)
    final = load_checkpoint(last, template)[0]
    # A kill after step 100's checkpoint: the resumed run ends on the same parameters.
    last.unlink()
    run.update_summary(status="interrupted")
    resumed = resume_offline(result.run_dir, dataset=env_free_dataset(), progress=False)
    assert resumed.summary["status"] == "finished" and resumed.summary["resumed_from_steps"] == [100]
    for before, after in zip(jax.tree.leaves(final), jax.tree.leaves(load_checkpoint(last, template)[0])):
        np.testing.assert_array_equal(np.asarray(before), np.asarray(after))
    assert [v["step"] for v in run.read_records("validation.jsonl")] == [100, 200]


def test_validation_episodes_are_never_trained_on():
    dataset = env_free_dataset()
    train = TrainConfig(validation_fraction=0.3, validation_seed=7)
    held_out = validation_episodes(dataset, 0.3, 7)
    assert len(held_out) == 3 and held_out.tolist() == validation_episodes(dataset, 0.3, 7).tolist()
    assert held_out.tolist() != validation_episodes(dataset, 0.3, 8).tolist()  # the seed decides
    algo = get_algorithm("td3bc")
    normalizer, device_data = prepare(algo, algo.Config(**SMALL), dataset, None, train)
    trained_rows = {tuple(row) for row in np.asarray(device_data["observations"]).round(4)}
    training_part, validation_part = split_episodes(dataset, 0.3, 7)
    held_rows = {tuple(row) for row in normalizer.normalize_observations(validation_part.observations).round(4)}
    assert len(trained_rows) == training_part.num_transitions == 210
    assert not trained_rows & held_rows
    np.testing.assert_allclose(normalizer.observation_mean, training_part.observations.mean(axis=0), rtol=1e-5)


def test_validation_fraction_leaving_no_training_data_is_refused(tmp_path, capsys):
    write_npz(make_random_dataset([5, 5]), tmp_path / "two.npz")
    assert main(["train", "bc", "--dataset", str(tmp_path / "two.npz"), "--validation-fraction", "0.9",
                 "--steps", "10", "--run-dir", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert "--validation-fraction 0.9 holds out 2 of the 2 episodes" in error and error.count("\n") == 1
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="expected a number in"):
        TrainConfig(validation_fraction=1.0).validate()
