"""Offline estimates for every checkpoint of a run directory, and the behaviour policy's return.

Which data: the dataset the run recorded (or `dataset`, which must have the same fingerprint, the
check a resumed run also makes); if the run held out validation episodes, only those are used,
so the estimate never scores a policy on the episodes it trained on. Results go to the run's
`ope.jsonl` (one line per checkpoint and method) and are returned.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from offrl.atomic import atomic_write_bytes
from offrl.data.dataset import Dataset
from offrl.data.fingerprint import dataset_fingerprint
from offrl.data.validation_split import select_episodes
from offrl.errors import ConfigError
from offrl.ope.fqe import FQEConfig, fit_fqe
from offrl.ope.importance import EpisodeArrays, fit_behaviour_log_probs, importance_estimate, target_log_probs, weighted_dr, wpdis
from offrl.train.checkpoint import checkpoint_files
from offrl.train.offline import load_recorded_dataset
from offrl.train.policy import load_policy
from offrl.train.run_dir import RunDirectory

METHODS = ("fqe", "wpdis", "dr")


@dataclass(frozen=True)
class OPEConfig:
    fqe: FQEConfig = FQEConfig()
    target_noise: float = 0.1  # IS/DR: the evaluated policy's Gaussian noise std in [-1, 1] action units
    behaviour_steps: int = 5_000  # gradient steps of the BC behaviour model (IS/DR)
    bootstrap_reps: int = 1000  # resamples of episodes for IS/DR and the behaviour return intervals


def run_dataset(run_dir: str | Path, dataset: Dataset | None = None) -> tuple[Dataset, str]:
    """The episodes to evaluate on and a label saying which (validation / all)."""
    config = RunDirectory.open(run_dir, lock=False).read_config()
    if dataset is None:
        dataset = load_recorded_dataset(config)
    else:
        recorded, given = config.get("dataset_fingerprint") or {}, dataset_fingerprint(dataset)
        if recorded.get("sha256") != given["sha256"]:
            raise ConfigError(
                f"--dataset {dataset.where} (fingerprint {given['sha256'][:12]}, {given['num_transitions']} transitions) "
                f"is not the dataset run '{run_dir}' was trained on (fingerprint {str(recorded.get('sha256', '?'))[:12]}, "
                f"{recorded.get('num_transitions', '?')} transitions); expected the run's own dataset, whose held-out "
                "validation episodes are then used."
            )
    validation = config.get("validation")
    if validation:
        return select_episodes(dataset, np.asarray(validation["episodes"])), f"{validation['num_episodes']} validation episodes"
    return dataset, f"all {dataset.num_episodes} episodes (the run held none out: the estimate includes training data)"


def behaviour_return(dataset: Dataset, discount: float, reps: int, confidence: float, seed: int = 0) -> dict[str, Any]:
    """The behaviour policy's Monte-Carlo return: mean discounted (and undiscounted) return of the
    logged episodes from their start, with a percentile bootstrap interval over episodes."""
    discounted = np.array([np.sum(dataset.rewards[s:e] * discount ** np.arange(e - s))
                           for s, e in zip(dataset.episode_starts, dataset.episode_ends)])
    rng = np.random.default_rng(seed)
    replicates = discounted[rng.integers(0, len(discounted), (reps, len(discounted)))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return {"method": "behaviour-mc", "estimate": float(discounted.mean()), "low": float(low), "high": float(high),
            "undiscounted_return": float(dataset.episode_returns().mean()), "discount": discount,
            "episodes": dataset.num_episodes}


def evaluate_policy_offline(policy, dataset: Dataset, methods: tuple[str, ...], config: OPEConfig,
                            behaviour_log_probs: np.ndarray | None = None) -> list[dict[str, Any]]:
    """One result dict per method for `policy` (a memoryless offrl Policy) on `dataset`."""
    normalizer = policy.normalizer
    results: list[dict[str, Any]] = []
    q_values = None
    if "fqe" in methods or "dr" in methods:
        value, q_values = fit_fqe(dataset, policy, normalizer.scale_actions, config.fqe)
        if "fqe" in methods:
            results.append({"method": "fqe", "estimate": value.estimate, "low": value.low, "high": value.high})
    if "wpdis" in methods or "dr" in methods:
        if behaviour_log_probs is None:
            raise ValueError("behaviour_log_probs are needed for wpdis/dr")
        scaled_logged = np.clip(normalizer.scale_actions(dataset.actions), -1, 1)
        policy_actions = np.asarray(policy(dataset.observations))
        policy_scaled = np.clip(normalizer.scale_actions(policy_actions), -1, 1)
        log_ratios = target_log_probs(policy_scaled, scaled_logged, config.target_noise) - behaviour_log_probs
        q_logged = v_states = None
        if q_values is not None:
            q_logged, v_states = q_values(dataset.observations, dataset.actions), q_values(dataset.observations, policy_actions)
        arrays = EpisodeArrays(dataset, log_ratios, config.fqe.discount, q_logged, v_states)
        for method, estimator in (("wpdis", wpdis), ("dr", weighted_dr)):
            if method in methods:
                found = importance_estimate(arrays, estimator, config.bootstrap_reps, config.fqe.confidence, config.fqe.seed)
                result = {"method": method, "estimate": found.estimate, "low": found.low, "high": found.high,
                          "effective_sample_size": found.ess, "episodes": found.num_episodes}
                if found.degenerate:
                    result["warning"] = (f"degenerate importance weights: effective sample size {found.ess:.1f} of "
                                         f"{found.num_episodes} episodes")
                results.append(result)
    return results


def evaluate_run(run_dir: str | Path, methods: tuple[str, ...] = ("fqe",), config: OPEConfig = OPEConfig(),
                 dataset: Dataset | None = None, checkpoints: str = "all") -> dict[str, Any]:
    """Estimates for every checkpoint (or only the last, `checkpoints="last"`) of `run_dir`."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ConfigError(f"--method {unknown[0]} is not known; expected one of {', '.join(METHODS)}.")
    run = RunDirectory.open(run_dir, lock=False)
    record = run.read_config()
    data, which = run_dataset(run_dir, dataset)
    files = checkpoint_files(run.checkpoints)
    if not files:
        raise ConfigError(f"Run directory '{run.path}' has no checkpoint; expected checkpoints/step_*.msgpack.")
    if checkpoints == "last":
        files = files[-1:]
    first = load_policy(run_dir, files[0])
    if first.stateful:
        raise ConfigError(f"Run '{run.path}' trained {record['algorithm']}, whose actions depend on the episode's history; "
                          "expected a memoryless policy (FQE and IS evaluate one action per state).")
    behaviour_log_probs = None
    if "wpdis" in methods or "dr" in methods:
        scaled = np.clip(first.normalizer.scale_actions(data.actions), -1, 1)
        behaviour_log_probs = fit_behaviour_log_probs(data.observations, scaled, config.behaviour_steps, seed=config.fqe.seed)
    results = []
    for path in files:
        step = int(path.stem.split("_")[1])
        policy = load_policy(run_dir, path)
        for result in evaluate_policy_offline(policy, data, methods, config, behaviour_log_probs):
            results.append({**result, "checkpoint_step": step})
    behaviour = behaviour_return(data, config.fqe.discount, config.bootstrap_reps, config.fqe.confidence)
    report = {"run_dir": str(run.path), "algorithm": record["algorithm"], "data": which, "behaviour": behaviour,
              "policies": results, "config": {"target_noise": config.target_noise, **asdict(config.fqe)}}
    # Each line records the settings it was computed with: `offrl select` reuses it only under the same ones.
    lines = "".join(json.dumps({**r, "data": which, "settings": estimator_settings(config, r["method"])}) + "\n"
                    for r in results)
    atomic_write_bytes(run.path / "ope.jsonl", lines.encode())
    return report


def estimator_settings(config: OPEConfig, method: str) -> dict[str, Any]:
    """The settings a `method` estimate depends on, as they read back from JSON (FQE: its own;
    the importance-sampling family: the behaviour model and target noise too)."""
    settings = asdict(config.fqe)
    if method != "fqe":
        settings.update(target_noise=config.target_noise, behaviour_steps=config.behaviour_steps,
                        bootstrap_reps=config.bootstrap_reps)
    return json.loads(json.dumps(settings))


def with_fqe(config: OPEConfig, **changes: Any) -> OPEConfig:
    return replace(config, fqe=replace(config.fqe, **changes))
