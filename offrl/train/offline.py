"""The offline engine: any algorithm, one compiled program per chunk of updates.

The dataset is put on the device once; each call of the compiled program runs `chunk` updates
(`lax.scan`), sampling batches by gather inside. The host wakes up only to log, evaluate and
checkpoint.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import jax
import numpy as np

import offrl
from offrl.data.dataset import Dataset
from offrl.data.transforms import fit_normalizer, training_arrays
from offrl.envs.factory import action_bounds, check_env_id
from offrl.errors import ConfigError
from offrl.evaluate.rollout import evaluate_policy
from offrl.evaluate.scores import normalized_score
from offrl.train.checkpoint import save_checkpoint
from offrl.train.configs import config_to_json, validate_algorithm_config
from offrl.train.fused import make_fused_update
from offrl.train.policy import Policy
from offrl.train.run_dir import RunDirectory


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1_000_000  # gradient updates; the D4RL papers train for 1M
    seed: int = 0
    eval_every: int = 10_000  # updates between evaluations (0: only at the end)
    eval_episodes: int = 10  # D4RL protocol: 10 episodes per evaluation
    log_every: int = 1_000  # updates between metric lines; also the fused chunk size
    checkpoint_every: int = 100_000  # updates between checkpoints (the last step is always saved)
    env_id: str | None = None  # evaluation env; defaults to the dataset's env id

    def validate(self) -> None:
        for name in ("steps", "log_every", "eval_episodes"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} is {getattr(self, name)}; expected a positive integer.")
        for name in ("eval_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} is {getattr(self, name)}; expected 0 or a positive integer.")


@dataclass
class TrainResult:
    run_dir: Path
    policy: Policy
    summary: dict[str, Any]


def _chunk_size(train: TrainConfig) -> int:
    """Largest chunk that lands exactly on every log, eval and checkpoint step."""
    chunk = train.log_every
    for every in (train.eval_every, train.checkpoint_every):
        if every:
            chunk = math.gcd(chunk, every)
    return min(chunk, train.steps)


def prepare(algo: ModuleType, algo_config: Any, dataset: Dataset, env_id: str | None):
    """Fit the normaliser and put the transformed dataset on the device."""
    low = high = None
    if dataset.metadata.action_low is None and env_id is not None:
        low, high = action_bounds(env_id)
    normalizer = fit_normalizer(
        dataset, algo_config.normalize_observations, algo_config.normalize_rewards, low, high
    )
    device_data = jax.device_put(training_arrays(dataset, normalizer))
    return normalizer, device_data


def train_offline(
    algo: ModuleType,
    algo_config: Any,
    dataset: Dataset,
    train: TrainConfig,
    run_dir: str | Path,
    dataset_reference: dict[str, Any] | None = None,
    progress: bool = True,
    on_log: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    train.validate()
    validate_algorithm_config(algo_config)
    env_id = train.env_id or dataset.metadata.env_id
    if env_id is None:
        raise ConfigError(
            f"{dataset.where} records no environment id; expected --env ENV_ID for evaluation."
        )
    check_env_id(env_id)
    has_reference = dataset.metadata.ref_min_score is not None and dataset.metadata.ref_max_score is not None
    normalizer, device_data = prepare(algo, algo_config, dataset, env_id)

    config_record = {
        "algorithm": algo.NAME,
        "algorithm_config": config_to_json(algo_config),
        "train": config_to_json(train),
        "env_id": env_id,
        "dataset": dataset_reference or {"name": dataset.metadata.name, "source": dataset.metadata.source},
        "dataset_metadata": dataset.metadata.to_json(),
        "spec": {"observation_dim": dataset.spec.observation_dim, "action_dim": dataset.spec.action_dim},
        "normalizer": normalizer.to_json(),
        "offrl_version": offrl.__version__,
        "jax_version": jax.__version__,
        "device": str(jax.devices()[0]),
    }
    run = RunDirectory.create(run_dir, config_record)
    try:
        return _train_loop(algo, algo_config, dataset, train, run, normalizer, device_data, env_id, has_reference, progress, on_log)
    except KeyboardInterrupt:
        run.update_summary(status="interrupted")
        raise
    except BaseException as error:
        run.update_summary(status="failed", error=f"{type(error).__name__}: {error}")
        raise


def _train_loop(algo, algo_config, dataset, train, run, normalizer, device_data, env_id, has_reference, progress, on_log):
    key = jax.random.PRNGKey(train.seed)
    init_key, train_key = jax.random.split(key)
    state = algo.init(init_key, dataset.spec, algo_config)
    chunk = _chunk_size(train)

    compile_started = time.perf_counter()
    compiled = {chunk: jax.jit(make_fused_update(algo, algo_config, chunk)).lower(state, device_data, train_key).compile()}
    compile_seconds = time.perf_counter() - compile_started

    def evaluate(state, step):
        policy = Policy(algo, state, normalizer)
        stats = evaluate_policy(policy, env_id, train.eval_episodes, seed=train.seed + 10_000)
        record = {"step": step, "return_mean": stats.mean_return, "return_std": float(np.std(stats.returns)),
                  "returns": stats.returns.tolist(), "lengths": stats.lengths.tolist()}
        if has_reference:
            scores = normalized_score(stats.returns, dataset.metadata.ref_min_score, dataset.metadata.ref_max_score)
            record["normalized_score"] = float(np.mean(scores))
            record["normalized_score_std"] = float(np.std(scores))
        run.append("eval.jsonl", record)
        return record

    from offrl.train.progress import TrainingProgress

    step, evals = 0, []
    train_seconds = 0.0
    with TrainingProgress(train.steps, enabled=progress) as bar:
        bar.log(f"{algo.NAME} on {dataset!r}: {train.steps} updates, compiled in {compile_seconds:.1f} s -> {run.path}")
        while step < train.steps:
            size = min(chunk, train.steps - step)
            if size not in compiled:  # a shorter final chunk compiles once more
                compiled[size] = jax.jit(make_fused_update(algo, algo_config, size)).lower(state, device_data, train_key).compile()
            train_key, chunk_key = jax.random.split(train_key)
            started = time.perf_counter()
            state, metrics = compiled[size](state, device_data, chunk_key)
            metrics = {name: float(value) for name, value in jax.device_get(metrics).items()}
            train_seconds += time.perf_counter() - started
            step += size
            if step % train.log_every == 0 or step == train.steps:
                record = {"step": step, **metrics, "updates_per_second": step / train_seconds}
                run.append("metrics.jsonl", record)
                if on_log:
                    on_log(record)
            if (train.eval_every and step % train.eval_every == 0) or step == train.steps:
                evals.append(evaluate(state, step))
                bar.report_eval(evals[-1])
            if (train.checkpoint_every and step % train.checkpoint_every == 0) or step == train.steps:
                save_checkpoint(run.checkpoints, step, state, train_key)
            bar.advance(step, metrics)

    score_key = "normalized_score" if has_reference else "return_mean"
    final, best = evals[-1], max(evals, key=lambda record: record[score_key])
    summary = run.update_summary(
        status="finished",
        steps=step,
        final_step=final["step"],
        final_return=final["return_mean"],
        best_return=best["return_mean"],
        best_step=best["step"],
        final_normalized_score=final.get("normalized_score"),
        best_normalized_score=best.get("normalized_score"),
        compile_seconds=compile_seconds,
        train_seconds=train_seconds,
        updates_per_second=step / train_seconds,
        finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    return TrainResult(run_dir=run.path, policy=Policy(algo, state, normalizer), summary=summary)
