"""Shared by the sweep tests (tests/test_sweep.py, tests/test_sweep_ray.py): a tiny spec, its data,
and the checks that a trial killed at the deterministic stall point resumes to the uninterrupted
result."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dataset_helpers import make_random_dataset
from offrl.data.d4rl_io import write_npz
from offrl.data.dataset import DatasetMetadata
from offrl.sweep.trial import STALL_AFTER_STEP_ENV, STALL_TRIAL_ENV, run_trial
from reliability_helpers import assert_same_run

TRAIN = {"steps": 600, "eval_every": 300, "log_every": 100, "checkpoint_every": 100, "eval_episodes": 1}
STALL_STEP = 300  # the killed trial dies at its step-400 metrics line, just after its step-300 checkpoint


def pendulum_shaped_npz(path: Path) -> Path:
    """Random Pendulum-v1-shaped transitions (obs 3, action 1 in [-2, 2]) with reference scores."""
    metadata = DatasetMetadata(
        name="pendulum-shaped", env_id="Pendulum-v1", ref_min_score=-1200.0, ref_max_score=-150.0,
        action_low=np.array([-2.0], np.float32), action_high=np.array([2.0], np.float32),
    )
    return write_npz(make_random_dataset([200] * 6, obs_dim=3, action_dim=1, seed=0, metadata=metadata), path)


def write_spec(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def tiny_spec_text(batch_sizes: str, train: dict = TRAIN) -> str:
    return f"""
name: tiny
algorithms: [bc]
datasets: [data.npz]
seeds: [0, 1]
train: {json.dumps(train)}
config:
  bc: {{hidden_dims: [32, 32]}}
grid:
  bc: {{batch_size: {batch_sizes}}}
selection: {{criterion: validation, episodes: 2}}
"""


def read_events(sweep_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (sweep_dir / "trials.jsonl").read_text().splitlines()]


def stall_trial(monkeypatch, trial_id: str) -> None:
    """Make trial `trial_id` kill itself (SIGKILL) just after its STALL_STEP checkpoint, on its first
    attempt only: the deterministic stall point of offrl.sweep.trial, instead of a timed kill."""
    monkeypatch.setenv(STALL_AFTER_STEP_ENV, str(STALL_STEP))
    monkeypatch.setenv(STALL_TRIAL_ENV, trial_id)


def assert_left_as_killed(trial_dir: Path, seeds=(0, 1)) -> None:
    """What a kill just after the STALL_STEP checkpoints leaves: everything still says running."""
    assert json.loads((trial_dir / "trial.json").read_text())["status"] == "running"
    for seed in seeds:
        run = trial_dir / f"seed_{seed}"
        assert json.loads((run / "summary.json").read_text())["status"] == "running"
        assert sorted(p.name for p in (run / "checkpoints").glob("step_*"))[-1] == f"step_{STALL_STEP:09d}.msgpack"


def assert_equals_uninterrupted(sweep_dir: Path, trial_id: str, reference: Path, seeds=(0, 1)) -> None:
    """The resumed trial equals `trial_id` run uninterrupted into `reference` (offrl.sweep.trial.run_trial
    in this process): bit-identical metrics, evaluations, scores, final parameters and keys of every
    seed, and the same validation returns."""
    index = json.loads((sweep_dir / "sweep.json").read_text())
    straight = run_trial(index["trials"][trial_id]["definition"], reference, index["spec_hash"])
    assert straight["status"] == "finished" and not straight["resumed"]
    resumed = json.loads((sweep_dir / "trials" / trial_id / "trial.json").read_text())
    assert resumed["resumed"] and resumed["validation"] == straight["validation"]
    for seed in seeds:
        run = sweep_dir / "trials" / trial_id / f"seed_{seed}"
        assert json.loads((run / "summary.json").read_text())["resumed_from_steps"] == [STALL_STEP]
        assert_same_run(run, reference / f"seed_{seed}")
