"""The offline engine: any algorithm, one compiled program per chunk of updates.

The dataset is put on the device once; each call of the compiled program runs `chunk` updates
(`lax.scan`), sampling batches by gather inside. The host wakes up only to log, evaluate,
check for divergence and checkpoint.

Fault tolerance (docs/reliability.md): a checkpoint holds the algorithm state, the engine's
sampling key, the step and the evaluation history, so `resume_offline` (or `offrl train ALGO
--resume RUN_DIR`) continues a killed run from its latest valid checkpoint and, on CPU, ends
bit-identical to an uninterrupted run. A NaN/inf loss, non-finite parameters or a `q_*` metric
beyond `max_abs_q` stop the run as "diverged" (DivergenceError) without checkpointing that state.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

import offrl
from offrl.data.dataset import Dataset
from offrl.data.filtering import filter_top_episodes
from offrl.data.fingerprint import dataset_fingerprint
from offrl.data.transforms import fit_normalizer, training_arrays
from offrl.envs.factory import action_bounds, check_env_id
from offrl.errors import ConfigError
from offrl.evaluate.rollout import evaluate_policy
from offrl.evaluate.scores import normalized_score
from offrl.train.checkpoint import latest_valid_checkpoint, save_checkpoint
from offrl.train.configs import config_from_json, config_to_json, validate_algorithm_config
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
    max_abs_q: float = 1e6  # a q_* metric beyond this magnitude stops the run as diverged

    def validate(self) -> None:
        for name in ("steps", "log_every", "eval_episodes"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} is {getattr(self, name)}; expected a positive integer.")
        for name in ("eval_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} is {getattr(self, name)}; expected 0 or a positive integer.")
        if not (self.max_abs_q > 0):  # also refuses NaN
            raise ConfigError(f"--max-abs-q is {self.max_abs_q}; expected a positive number.")


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss or parameters, or a Q-value beyond `max_abs_q`."""

    def __init__(self, message: str, step: int, quantity: str, value: float):
        super().__init__(message)
        self.step, self.quantity, self.value = step, quantity, value


@dataclass
class TrainResult:
    run_dir: Path
    policy: Policy
    summary: dict[str, Any]


def _stop_diverged(run: RunDirectory, previous_step: int, step: int, problem, last_checkpoint: Path | None) -> None:
    quantity, value, what = problem
    kept = f"the last good checkpoint is {last_checkpoint.name}" if last_checkpoint else "no checkpoint was written"
    message = (
        f"Training diverged in the updates after step {previous_step} (by step {step}): {what}; "
        f"{kept} (try a smaller learning rate)."
    )
    run.update_summary(status="diverged", error=message, divergence={
        "step": step, "after_step": previous_step, "quantity": quantity, "value": repr(value),
        "last_checkpoint": None if last_checkpoint is None else last_checkpoint.name,
    })
    raise DivergenceError(message, step, quantity, value)


def _chunk_size(train: TrainConfig) -> int:
    """Largest chunk that lands exactly on every log, eval and checkpoint step."""
    chunk = train.log_every
    for every in (train.eval_every, train.checkpoint_every):
        if every:
            chunk = math.gcd(chunk, every)
    return min(chunk, train.steps)


def prepare(algo: ModuleType, algo_config: Any, dataset: Dataset, env_id: str | None):
    """Fit the normaliser and put the transformed dataset on the device.

    A Config with a `top_fraction` field (%BC) trains on the best episodes only; the normaliser
    is fitted on what is trained on, as in CORL's any_percent_bc.
    """
    if getattr(algo_config, "top_fraction", None) is not None:
        dataset = filter_top_episodes(dataset, algo_config.top_fraction)
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
    resume: bool = False,
) -> TrainResult:
    """Train `algo` on `dataset`, writing the run directory `run_dir`.

    With `resume=True`, `run_dir` is an existing run: its config.json must record the same
    algorithm, configuration and dataset (fingerprint), and training continues from its latest
    valid checkpoint. Raises DivergenceError (status "diverged") if training diverges.
    """
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
        "dataset_fingerprint": dataset_fingerprint(dataset),
        "spec": {"observation_dim": dataset.spec.observation_dim, "action_dim": dataset.spec.action_dim},
        "normalizer": normalizer.to_json(),
        "offrl_version": offrl.__version__,
        "jax_version": jax.__version__,
        "device": str(jax.devices()[0]),
    }
    if resume:
        run = RunDirectory.open(run_dir)
        try:
            _check_same_run(run, config_record)
            summary = run.read_summary() if (run.path / "summary.json").exists() else {}
            if summary.get("status") == "finished":
                result = _finished_result(algo, algo_config, dataset, run, normalizer, summary)
                run.unlock()
                return result
            if summary.get("status") == "diverged":
                step = (summary.get("divergence") or {}).get("step", "?")
                raise ConfigError(
                    f"Run '{run.path}' diverged by step {step} (see its summary.json); resuming it with the "
                    "same configuration would diverge again, so start a new run instead."
                )
        except BaseException:
            run.unlock()
            raise
    else:
        run = RunDirectory.create(run_dir, config_record)
    try:
        return _train_loop(algo, algo_config, dataset, train, run, normalizer, device_data, env_id, has_reference, progress, on_log, resume)
    except DivergenceError:
        raise  # the summary already says "diverged"
    except KeyboardInterrupt:
        run.update_summary(status="interrupted")
        raise
    except BaseException as error:
        run.update_summary(status="failed", error=f"{type(error).__name__}: {error}")
        raise
    finally:
        run.unlock()


# Keys of config.json that a resumed run must match exactly (everything that changes the result).
_RESUME_KEYS = ("algorithm", "algorithm_config", "train", "env_id", "spec", "dataset_fingerprint", "normalizer")


def _check_same_run(run: RunDirectory, record: dict[str, Any]) -> None:
    saved = run.read_config()
    where = run.path / "config.json"
    for key in _RESUME_KEYS:
        expected = json.loads(json.dumps(record[key]))
        if key not in saved:
            raise ConfigError(f"'{where}' has no '{key}' (written by an older offrl); this run cannot be resumed.")
        if saved[key] == expected:
            continue
        if key == "dataset_fingerprint":
            raise ConfigError(
                f"The dataset differs from the one '{run.path}' was trained on (fingerprint "
                f"{expected['sha256'][:12]} with {expected['num_transitions']} transitions, recorded "
                f"{saved[key].get('sha256', '?')[:12]} with {saved[key].get('num_transitions', '?')}); "
                "expected the same dataset to resume."
            )
        if isinstance(expected, dict) and isinstance(saved[key], dict):
            field = next(k for k in sorted(set(expected) | set(saved[key])) if expected.get(k) != saved[key].get(k))
            raise ConfigError(
                f"'{key}.{field}' is {expected.get(field)!r} but '{where}' records {saved[key].get(field)!r}; "
                "a resumed run must keep its configuration."
            )
        raise ConfigError(
            f"'{key}' is {expected!r} but '{where}' records {saved[key]!r}; a resumed run must keep its configuration."
        )
    if saved.get("jax_version") != jax.__version__:
        warnings.warn(
            f"Run '{run.path}' was trained with JAX {saved.get('jax_version')}, this is {jax.__version__}; "
            "the continuation may not be bit-identical.", stacklevel=3,
        )


def _finished_result(algo, algo_config, dataset, run, normalizer, summary) -> TrainResult:
    template = algo.init(jax.random.PRNGKey(0), dataset.spec, algo_config)
    checkpoint = latest_valid_checkpoint(run.checkpoints, template)
    if checkpoint is None:
        raise ConfigError(f"Run '{run.path}' is finished but has no checkpoint; expected checkpoints/step_*.msgpack.")
    return TrainResult(run_dir=run.path, policy=Policy(algo, checkpoint.state, normalizer), summary=summary)


def recorded_run(run_dir: str | Path) -> tuple[ModuleType, Any, TrainConfig, dict[str, Any]]:
    """The algorithm, its config, the TrainConfig and the whole config.json of a run directory."""
    from offrl.algos import get_algorithm

    config = RunDirectory.open(run_dir, lock=False).read_config()
    where = str(Path(run_dir) / "config.json")
    try:
        algo = get_algorithm(config["algorithm"])
        algo_config = config_from_json(algo.Config, config["algorithm_config"], where=where)
        train = config_from_json(TrainConfig, config["train"], where=where)
    except (KeyError, TypeError) as error:
        raise ConfigError(f"'{where}' is missing or has a malformed field ({error}); expected a config written by offrl.") from None
    return algo, algo_config, train, config


def load_recorded_dataset(config: dict[str, Any]) -> Dataset:
    """Load the dataset a run's config.json names (the CLI argument, else the source path)."""
    reference = config.get("dataset") or {}
    argument = reference.get("argument")
    if argument:
        from offrl.data.registry import resolve_dataset

        return resolve_dataset(argument, data_dir=reference.get("data_dir"), clip_actions=bool(reference.get("clip_actions")))
    source = reference.get("source")
    if source and Path(source).exists():
        from offrl.data.load import load_dataset

        return load_dataset(source, clip_actions=bool(reference.get("clip_actions")))
    raise ConfigError(
        f"The run records no loadable dataset (name {reference.get('name')!r}, source {source!r}); "
        "expected the dataset to be given (--dataset, or resume_offline(run_dir, dataset=...))."
    )


def resume_offline(
    run_dir: str | Path,
    dataset: Dataset | None = None,
    progress: bool = True,
    on_log: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Continue the run in `run_dir` from its latest valid checkpoint, with its recorded config.

    `dataset` defaults to the one config.json names; either way its fingerprint must match.
    """
    algo, algo_config, train, config = recorded_run(run_dir)
    if dataset is None:
        dataset = load_recorded_dataset(config)
    return train_offline(algo, algo_config, dataset, train, run_dir, dataset_reference=config.get("dataset"),
                         progress=progress, on_log=on_log, resume=True)


@jax.jit
def _all_finite(state) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(state)
              if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def _divergence(metrics: dict[str, float], state: Any, max_abs_q: float) -> tuple[str, float, str] | None:
    """(quantity, value, why) for the first sign of divergence, or None.

    A NaN metric alone is not divergence: a chunk may hold no update of a delayed quantity
    (nanmean of nothing); a NaN loss that reached the parameters shows in the state.
    """
    for name, value in metrics.items():
        if math.isinf(value):
            return f"metric '{name}'", value, f"metric '{name}' is {value:g}"
        if name.startswith("q_") and abs(value) > max_abs_q:
            return f"metric '{name}'", value, f"metric '{name}' is {value:g}, beyond --max-abs-q {max_abs_q:g}"
    if bool(_all_finite(state)):
        return None
    for name, value in metrics.items():
        if math.isnan(value):
            return f"metric '{name}'", value, f"metric '{name}' is NaN and the parameters are no longer finite"
    for path, leaf in jax.tree_util.tree_leaves_with_path(jax.device_get(state)):
        leaf = np.asarray(leaf)
        if leaf.dtype.kind == "f" and not np.all(np.isfinite(leaf)):
            where = jax.tree_util.keystr(path)
            return f"state {where}", float("nan"), f"state {where} holds NaN or infinite values"
    return "the state", float("nan"), "the state holds NaN or infinite values"


def _train_loop(algo, algo_config, dataset, train, run, normalizer, device_data, env_id, has_reference, progress, on_log, resume=False):
    key = jax.random.PRNGKey(train.seed)
    init_key, train_key = jax.random.split(key)
    state = algo.init(init_key, dataset.spec, algo_config)
    step, evals, train_seconds = 0, [], 0.0
    last_checkpoint: Path | None = None
    if resume:
        checkpoint = latest_valid_checkpoint(run.checkpoints, state, quarantine=True)
        if checkpoint is not None:
            state, train_key, step = checkpoint.state, checkpoint.key, checkpoint.step
            evals = json.loads(checkpoint.engine.get("evals", "[]"))
            train_seconds = float(checkpoint.engine.get("train_seconds", 0.0))
            last_checkpoint = checkpoint.path
        run.truncate_records("metrics.jsonl", step)
        run.write_records("eval.jsonl", evals)
        summary = run.read_summary() if (run.path / "summary.json").exists() else {}
        summary.pop("error", None)
        summary.update(status="running", resumed_from_steps=[*summary.get("resumed_from_steps", []), step])
        run.write_summary(summary)
    chunk = _chunk_size(train)

    compile_started = time.perf_counter()
    compiled = {chunk: jax.jit(make_fused_update(algo, algo_config, chunk)).lower(state, device_data, train_key).compile()}
    compile_seconds = time.perf_counter() - compile_started

    policy = Policy(algo, state, normalizer)  # one jitted `act` for every evaluation

    def evaluate(state, step):
        policy.state = state
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

    with TrainingProgress(train.steps, enabled=progress) as bar:
        action = f"resumed at step {step}" if resume else f"{train.steps} updates"
        bar.log(f"{algo.NAME} on {dataset!r}: {action}, compiled in {compile_seconds:.1f} s -> {run.path}")
        bar.advance(step, {})
        while step < train.steps:
            size = min(chunk, train.steps - step)
            if size not in compiled:  # a shorter final chunk compiles once more
                compiled[size] = jax.jit(make_fused_update(algo, algo_config, size)).lower(state, device_data, train_key).compile()
            train_key, chunk_key = jax.random.split(train_key)
            started = time.perf_counter()
            new_state, metrics = compiled[size](state, device_data, chunk_key)
            metrics = {name: float(value) for name, value in jax.device_get(metrics).items()}
            train_seconds += time.perf_counter() - started
            problem = _divergence(metrics, new_state, train.max_abs_q)
            if problem is not None:
                _stop_diverged(run, step, step + size, problem, last_checkpoint)
            state = new_state
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
                last_checkpoint = save_checkpoint(run.checkpoints, step, state, train_key,
                                                  {"evals": json.dumps(evals), "train_seconds": train_seconds})
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
        updates_per_second=step / train_seconds if train_seconds else None,
        finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    return TrainResult(run_dir=run.path, policy=Policy(algo, state, normalizer), summary=summary)
