"""The offline engine: any algorithm, one compiled program per chunk of updates.

The dataset is put on the device once; each call of the compiled program runs `chunk` updates
(`lax.scan`), sampling batches by gather inside. The host wakes up only to log, evaluate,
check for divergence and checkpoint.

An algorithm with a `pretraining_steps(config)` hook (SPOT: its VAE) gets that many updates
first, apart from `--steps`: not evaluated, logged to pretrain_metrics.jsonl, and reported as
summary.json's `pretrain_steps` and `pretrain_seconds` (`steps`, `train_seconds` and
`updates_per_second` count the main updates only).

Fault tolerance (docs/reliability.md): a checkpoint holds the algorithm state, the engine's
sampling key, the step and the evaluation history, so `resume_offline` (or `offrl train ALGO
--resume RUN_DIR`) continues a killed run from its latest valid checkpoint and, on CPU, ends
bit-identical to an uninterrupted run. A NaN/inf loss, non-finite parameters or a `q_*` metric
beyond `max_abs_q` stop the run as "diverged" (DivergenceError) without checkpointing that state.
"""

from __future__ import annotations

import dataclasses
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

from offrl.algos import get_algorithm
from offrl.data.dataset import Dataset
from offrl.data.filtering import filter_top_episodes
from offrl.data.load import load_dataset
from offrl.data.registry import resolve_dataset
from offrl.data.transforms import fit_normalizer, training_arrays
from offrl.data.validation_split import split_episodes, validation_episodes
from offrl.envs.factory import action_bounds, check_env_id
from offrl.errors import ConfigError
from offrl.evaluate.rollout import evaluate_policy
from offrl.evaluate.safe_scores import safe_record
from offrl.evaluate.scores import normalized_score
from offrl.train.checkpoint import Checkpoint, checkpoint_path, latest_valid_checkpoint, load_checkpoint_full, save_checkpoint
from offrl.train.divergence import DivergenceError, all_finite, all_finite_per_seed, find_divergence, mark_diverged
from offrl.train.configs import config_from_json, config_to_json, validate_algorithm_config
from offrl.train.extra_fields import offline_extra_arrays
from offrl.train.addons import addon_arrays
from offrl.train.fused import make_fused_update
from offrl.train.hubl import blended_config
from offrl.train.initial_state import init_state, init_states
from offrl.train.model_rollouts import model_rollout_arrays, uses_model_rollouts
from offrl.train.policy import Policy
from offrl.train.progress import TrainingProgress
from offrl.train.run_dir import RunDirectory
from offrl.train.run_record import common_record
from offrl.train.samplers import check_sampler
from offrl.train.seed_axis import resolve_seed_axis, seed_axis
from offrl.train.synthetic_mix import check_synthetic_ratio, mix_arrays
from offrl.train.validation import validation_probe


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1_000_000  # gradient updates (the D4RL papers: 1M); pretraining, e.g. SPOT's VAE, comes on top
    seed: int = 0
    eval_every: int = 10_000  # updates between evaluations (0: only at the end)
    eval_episodes: int = 10  # D4RL protocol: 10 episodes per evaluation
    log_every: int = 1_000  # updates between metric lines; also the fused chunk size
    checkpoint_every: int = 100_000  # updates between checkpoints (the last step is always saved)
    env_id: str | None = None  # evaluation env; defaults to the dataset's env id
    max_abs_q: float = 1e6  # a q_* metric beyond this magnitude stops the run as diverged
    validation_fraction: float = 0.0  # episodes held out, never trained on (NeoRL, Qin et al. 2022: split by trajectory)
    validation_seed: int = 0  # seed of the episode split, apart from --seed so that seeds share one split
    # Add-ons for any algorithm (offrl/train/samplers.py, offrl/train/hubl.py):
    sampler: str = "uniform"  # uniform, return-weighted, advantage-weighted or episode-weights (Hong et al. 2023)
    sampler_temperature: float = 0.1  # softmax temperature of the weighted samplers (dw-offline-rl run_iql.py AW-0.1)
    sampler_weights: str | None = None  # with --sampler episode-weights: a .npy/.txt file, one weight per episode
    hubl: float = 0.0  # HUBL blending factor λ in [0, 1) (Geng et al. 2023); 0 = off
    synthetic_ratio: float | None = None  # share of each batch from SynthER rows (offrl/train/synthetic_mix.py); unset: uniform
    # Reward transform for any algorithm: r * reward_multiplier * (normalize_rewards' scale) + reward_offset
    # (CORL's reward_scale / reward_bias; the names differ from safe RL's per-algorithm reward_scale). The references'
    # AntMaze transforms are presets: CORL td3_bc/iql/awac/edac/sac_n.py modify_reward r - 1, ReBRAC r * 100,
    # CQL 10 r - 5 (offrl/train/presets/*.json).
    reward_multiplier: float = 1.0  # rewards trained on are r * this (times normalize_rewards' scale) + --reward-offset
    reward_offset: float = 0.0  # added to every reward after the scaling (CORL's AntMaze: -1)

    def validate(self) -> None:
        for name in ("steps", "log_every", "eval_episodes"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} is {getattr(self, name)}; expected a positive integer.")
        for name in ("eval_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} is {getattr(self, name)}; expected 0 or a positive integer.")
        if not (self.max_abs_q > 0):  # also refuses NaN
            raise ConfigError(f"--max-abs-q is {self.max_abs_q}; expected a positive number.")
        if not (0.0 <= self.validation_fraction < 1.0):
            raise ConfigError(f"--validation-fraction is {self.validation_fraction}; expected a number in [0, 1).")
        if not (self.reward_multiplier > 0 and math.isfinite(self.reward_multiplier)):
            raise ConfigError(f"--reward-multiplier is {self.reward_multiplier}; expected a positive number.")
        if not math.isfinite(self.reward_offset):
            raise ConfigError(f"--reward-offset is {self.reward_offset}; expected a finite number.")
        check_sampler(self.sampler, self.sampler_temperature, self.sampler_weights)
        check_synthetic_ratio(self.synthetic_ratio)


@dataclass
class TrainResult:
    run_dir: Path
    policy: Policy | None  # None for a seed that diverged
    summary: dict[str, Any]


def _chunk_size(train: TrainConfig) -> int:
    """Largest chunk that lands exactly on every log, eval and checkpoint step."""
    chunk = train.log_every
    for every in (train.eval_every, train.checkpoint_every):
        if every:
            chunk = math.gcd(chunk, every)
    return min(chunk, train.steps)


def prepare(algo: ModuleType, algo_config: Any, dataset: Dataset, env_id: str | None, train: TrainConfig | None = None):
    """Fit the normaliser and put the transformed dataset on the device.

    With `train.validation_fraction`, the held-out episodes (offrl.data.validation_split) are
    removed first: neither the normaliser nor any update sees them.

    A Config with a `top_fraction` field (%BC) trains on the best episodes only (ranked with its
    `ranking_discount`, if it has one); the normaliser is fitted on what is trained on, as in
    CORL's any_percent_bc. An algorithm with a
    `training_data(dataset, normalizer, config)` hook lays the data out itself (sequence windows,
    see offrl/train/fused.py); the others get the transition arrays.
    """
    if train is not None and train.validation_fraction > 0:
        dataset, _ = split_episodes(dataset, train.validation_fraction, train.validation_seed)
    if getattr(algo_config, "top_fraction", None) is not None:
        dataset = filter_top_episodes(dataset, algo_config.top_fraction, getattr(algo_config, "ranking_discount", 1.0))
    low = high = None
    if dataset.metadata.action_low is None and env_id is not None:
        low, high = action_bounds(env_id)
    normalizer = fit_normalizer(
        dataset, algo_config.normalize_observations, algo_config.normalize_rewards, low, high,
        reward_scale=train.reward_multiplier if train is not None else 1.0, reward_bias=train.reward_offset if train is not None else 0.0,
    )
    layout = getattr(algo, "training_data", None)
    arrays = training_arrays(dataset, normalizer) if layout is None else layout(dataset, normalizer, algo_config)
    if layout is None:  # fields an algorithm declares in EXTRA_FIELDS (Cal-QL's mc_returns)
        arrays.update(offline_extra_arrays(algo, algo_config, dataset, normalizer))
    if train is not None:  # --hubl relabelling and --sampler weights (offrl/train/addons.py)
        arrays = addon_arrays(algo, algo_config, dataset, arrays, train)
        arrays = mix_arrays(dataset, arrays, train.synthetic_ratio)
    if uses_model_rollouts(algo):  # the dynamics ensemble and termination box (offrl/train/model_rollouts.py)
        arrays["model_rollouts"] = model_rollout_arrays(algo, algo_config, dataset, normalizer, env_id)
    device_data = jax.device_put(arrays)
    return normalizer, device_data


def check_training_inputs(algo_config: Any, dataset: Dataset, train: TrainConfig) -> tuple[str, bool]:
    """Validate the configs; return the evaluation env id (None: no simulator, so no rollouts;
    offline estimates come from `offrl ope`) and whether normalised scores exist."""
    train.validate()
    validate_algorithm_config(algo_config)
    env_id = train.env_id or dataset.metadata.env_id
    if env_id is not None:
        check_env_id(env_id)
    validation_episodes(dataset, train.validation_fraction, train.validation_seed)  # refuses a split leaving nothing
    has_reference = dataset.metadata.ref_min_score is not None and dataset.metadata.ref_max_score is not None
    return env_id, has_reference


def run_record(algo: ModuleType, algo_config: Any, dataset: Dataset, train: TrainConfig, env_id: str,
               normalizer, dataset_reference: dict[str, Any] | None) -> dict[str, Any]:
    """config.json: everything needed to rerun (and to refuse resuming a different) run."""
    record = {**common_record(algo, algo_config, env_id, dataset, dataset_reference, normalizer),
              "train": config_to_json(train)}
    if env_id is None:
        record["online_evaluation"] = False  # no simulator: no rollouts were done; see `offrl ope`
    if train.validation_fraction > 0:
        held_out = validation_episodes(dataset, train.validation_fraction, train.validation_seed)
        record["validation"] = {"fraction": train.validation_fraction, "seed": train.validation_seed,
                                "episodes": held_out.tolist(), "num_episodes": len(held_out)}
    return record


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
    env_id, has_reference = check_training_inputs(algo_config, dataset, train)
    normalizer, device_data = prepare(algo, algo_config, dataset, env_id, train)
    record = run_record(algo, algo_config, dataset, train, env_id, normalizer, dataset_reference)
    if resume:
        run = RunDirectory.open(run_dir)
        try:
            check_same_run(run, record)
            summary = run.read_summary() if (run.path / "summary.json").exists() else {}
            if summary.get("status") == "finished":
                result = finished_result(algo, algo_config, dataset, run, normalizer, summary)
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
        run = RunDirectory.create(run_dir, record)
    return guarded([run], lambda: train_members(
        algo, algo_config, dataset, train, [run], [train.seed], normalizer, device_data, env_id,
        has_reference, progress, on_log, resume,
    ))[0]


def guarded(runs: list[RunDirectory], body: Callable[[], Any]) -> Any:
    """Run `body`; a crash or Ctrl-C marks each still-running run failed/interrupted; unlock all."""
    def mark(**changes):
        for run in runs:
            if run.read_summary().get("status") == "running":
                run.update_summary(**changes)

    try:
        return body()
    except DivergenceError:
        raise  # the summaries already say "diverged"
    except KeyboardInterrupt:
        mark(status="interrupted")
        raise
    except BaseException as error:
        mark(status="failed", error=f"{type(error).__name__}: {error}")
        raise
    finally:
        for run in runs:
            run.unlock()


# Keys of config.json that a resumed run must match exactly (everything that changes the result).
_RESUME_KEYS = ("algorithm", "algorithm_config", "train", "env_id", "spec", "dataset_fingerprint", "normalizer")


def _added_field_defaults(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per config.json section, the defaults of fields offrl may have added since a run was written:
    a run saved before a field existed ran with that field's default behaviour."""
    from offrl.algos import get_algorithm

    def defaults_of(config_class) -> dict[str, Any]:
        return {field.name: json.loads(json.dumps(field.default)) for field in dataclasses.fields(config_class)
                if field.default is not dataclasses.MISSING}

    try:
        algorithm_defaults = defaults_of(get_algorithm(record["algorithm"]).Config)
    except ConfigError:
        algorithm_defaults = {}
    return {"train": defaults_of(TrainConfig), "algorithm_config": algorithm_defaults, "normalizer": {"reward_bias": 0.0}}


def check_same_run(run: RunDirectory, record: dict[str, Any]) -> None:
    saved = run.read_config()
    where = run.path / "config.json"
    added = _added_field_defaults(record)
    for key in _RESUME_KEYS:
        expected = json.loads(json.dumps(record[key]))
        if key not in saved:
            raise ConfigError(f"'{where}' has no '{key}' (written by an older offrl); this run cannot be resumed.")
        if isinstance(saved[key], dict) and key in added:  # fields added since: their defaults
            saved[key] = {**{name: value for name, value in added[key].items() if name in (expected or {})}, **saved[key]}
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


def finished_result(algo, algo_config, dataset, run, normalizer, summary) -> TrainResult:
    template = init_state(algo, jax.random.PRNGKey(0), dataset.spec, algo_config)
    checkpoint = latest_valid_checkpoint(run.checkpoints, template)
    if checkpoint is None:
        raise ConfigError(f"Run '{run.path}' is finished but has no checkpoint; expected checkpoints/step_*.msgpack.")
    return TrainResult(run_dir=run.path, policy=Policy(algo, checkpoint.state, normalizer), summary=summary)


def recorded_run(run_dir: str | Path) -> tuple[ModuleType, Any, TrainConfig, dict[str, Any]]:
    """The algorithm, its config, the TrainConfig and the whole config.json of a run directory."""
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
        return resolve_dataset(argument, data_dir=reference.get("data_dir"), clip_actions=bool(reference.get("clip_actions")))
    source = reference.get("source")
    if source and Path(source).exists():
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


def _resume_point(runs: list[RunDirectory], template: Any) -> list[Checkpoint | None]:
    """Each run's checkpoint at the newest step all of them reached (None: start from scratch).

    Seeds of one program checkpoint together, but a kill between two seeds' writes can leave
    one a checkpoint ahead; the group resumes from the step they share.
    """
    found = [latest_valid_checkpoint(run.checkpoints, template, quarantine=True) for run in runs]
    common = min(0 if checkpoint is None else checkpoint.step for checkpoint in found)
    if common == 0:
        return [None] * len(runs)
    return [checkpoint if checkpoint.step == common else load_checkpoint_full(checkpoint_path(run.checkpoints, common), template)
            for run, checkpoint in zip(runs, found)]


def _evaluation_record(policy: Policy, env_id: str, train: TrainConfig, seed: int, step: int, dataset: Dataset,
                       has_reference: bool, target_cost: float | None = None) -> dict[str, Any]:
    stats = evaluate_policy(policy, env_id, train.eval_episodes, seed=seed + 10_000)
    record = {"step": step, "return_mean": stats.mean_return, "return_std": float(np.std(stats.returns)),
              "returns": stats.returns.tolist(), "lengths": stats.lengths.tolist()}
    if has_reference:
        scores = normalized_score(stats.returns, dataset.metadata.ref_min_score, dataset.metadata.ref_max_score)
        record["normalized_score"] = float(np.mean(scores))
        record["normalized_score_std"] = float(np.std(scores))
    if stats.costs is not None:  # a constrained task: episode costs, and DSRL's scores at the target cost
        record.update(cost_mean=stats.mean_cost, costs=stats.costs.tolist())
        if target_cost is not None:
            record.update(safe_record(stats.returns, stats.costs, target_cost, dataset.metadata.ref_min_score,
                                      dataset.metadata.ref_max_score))
    return record


def _safe_summary(final: dict[str, Any]) -> dict[str, Any]:
    """The final evaluation's cost numbers (constrained tasks only) for summary.json."""
    keys = {"cost_mean": "final_cost", "target_cost": "target_cost", "normalized_cost": "final_normalized_cost",
            "normalized_reward": "final_normalized_reward", "safe": "final_safe"}
    return {name: final[key] for key, name in keys.items() if key in final}


def train_members(algo, algo_config, dataset, train, runs, seeds, normalizer, device_data, env_id, has_reference,
                  progress, on_log, resume=False, axis: str = "auto") -> list[TrainResult]:
    """Train one agent per seed, all in one compiled program (with a seed axis, `vmap` or `map`
    as offrl/train/seed_axis.py explains, when there are several), each writing its own run
    directory. Seed `s` of a group follows the same key schedule as a single run with seed `s`,
    so the two agree to float tolerance.
    """
    count = len(runs)
    vmapped = count > 1
    key_pairs = [jax.random.split(jax.random.PRNGKey(seed)) for seed in seeds]
    template = init_state(algo, key_pairs[0][0], dataset.spec, algo_config)
    if vmapped:
        state = init_states(algo, jnp.stack([pair[0] for pair in key_pairs]), dataset.spec, algo_config)
        train_key = jnp.stack([pair[1] for pair in key_pairs])
    else:
        state, train_key = template, key_pairs[0][1]

    def member(tree, index):
        return jax.tree.map(lambda leaf: leaf[index], tree) if vmapped else tree

    step, train_seconds = 0, 0.0
    evals: list[list[dict[str, Any]]] = [[] for _ in runs]
    last_checkpoint: list[Path | None] = [None] * count
    if resume:
        checkpoints = _resume_point(runs, template)
        if checkpoints[0] is not None:
            stack = (lambda *leaves: jnp.stack(leaves)) if vmapped else (lambda leaf: leaf)
            state = jax.tree.map(stack, *[checkpoint.state for checkpoint in checkpoints])
            train_key = stack(*[checkpoint.key for checkpoint in checkpoints])
            step = checkpoints[0].step
            evals = [json.loads(checkpoint.engine.get("evals", "[]")) for checkpoint in checkpoints]
            train_seconds = float(checkpoints[0].engine.get("train_seconds", 0.0))
            last_checkpoint = [checkpoint.path for checkpoint in checkpoints]
        for run, run_evals in zip(runs, evals):
            run.truncate_records("metrics.jsonl", step)
            run.truncate_records("validation.jsonl", step)
            run.write_records("eval.jsonl", run_evals)
            summary = run.read_summary() if (run.path / "summary.json").exists() else {}
            summary.pop("error", None)
            summary.update(status="running", resumed_from_steps=[*summary.get("resumed_from_steps", []), step])
            run.write_summary(summary)
    chunk = _chunk_size(train)
    split_pair = jax.jit(jax.vmap(jax.random.split, out_axes=1) if vmapped else jax.random.split)
    check_finite = all_finite_per_seed if vmapped else all_finite

    def compile_chunk(size: int):
        fused = make_fused_update(algo, blended_config(algo_config, train.hubl), size)  # --hubl: discount γ(1-λ)
        if vmapped:
            fused = seed_axis(fused, axis)
        return jax.jit(fused).lower(state, device_data, train_key).compile()

    compile_started = time.perf_counter()
    compiled = {chunk: compile_chunk(chunk)}
    compile_seconds = time.perf_counter() - compile_started

    policy = Policy(algo, member(state, 0), normalizer)  # one jitted `act` for every evaluation
    probe = validation_probe(algo, algo_config, dataset, train.validation_fraction, train.validation_seed, normalizer)
    active = list(range(count))
    errors: dict[int, DivergenceError] = {}

    def run_chunk(state, train_key, size, previous_step, last_step):
        """One compiled chunk of `size` updates, with the divergence check of every seed."""
        if size not in compiled:  # a shorter final chunk compiles once more
            compiled[size] = compile_chunk(size)
        train_key, chunk_key = split_pair(train_key)
        started = time.perf_counter()
        new_state, metrics = compiled[size](state, device_data, chunk_key)
        metrics = {name: np.atleast_1d(value) for name, value in jax.device_get(metrics).items()}
        seconds = time.perf_counter() - started
        finite = np.atleast_1d(np.asarray(check_finite(new_state)))
        member_metrics = [{name: float(values[index]) for name, values in metrics.items()} for index in range(count)]
        for index in list(active):
            problem = find_divergence(member_metrics[index], member(new_state, index), bool(finite[index]), train.max_abs_q)
            if problem is not None:
                errors[index] = mark_diverged(runs[index], previous_step, last_step, problem, last_checkpoint[index])
                active.remove(index)
                bar.log(f"seed {seeds[index]} diverged: {errors[index]}")
        if not active:
            raise errors[min(errors)]
        return new_state, train_key, member_metrics, seconds

    def pretrain(state, train_key, total):
        """The algorithm's pretraining updates (SPOT's VAE), before and apart from `train.steps`:
        logged to pretrain_metrics.jsonl, counted in summary.json's `pretrain_steps`."""
        bar.log(f"pretraining: {total} updates before the {train.steps} counted by --steps")
        for run in runs:
            run.write_records("pretrain_metrics.jsonl", [])
        done, seconds = 0, 0.0
        while done < total:
            size = min(chunk, total - done)
            state, train_key, member_metrics, chunk_seconds = run_chunk(state, train_key, size, 0, 0)
            done, seconds = done + size, seconds + chunk_seconds
            if done % train.log_every == 0 or done == total:
                for index in active:  # quantities of the main phase are NaN here: left out
                    values = {name: value for name, value in member_metrics[index].items() if not math.isnan(value)}
                    runs[index].append("pretrain_metrics.jsonl", {"pretrain_step": done, **values})
        for index in active:
            runs[index].update_summary(pretrain_steps=done, pretrain_seconds=seconds)
        return state, train_key

    with TrainingProgress(train.steps, enabled=progress) as bar:
        action = f"resumed at step {step}" if resume else f"{train.steps} updates"
        seeds_note = f" x {count} seeds in one program ({resolve_seed_axis(axis)})" if vmapped else ""
        bar.log(f"{algo.NAME} on {dataset!r}: {action}{seeds_note}, compiled in {compile_seconds:.1f} s -> "
                f"{runs[0].path if count == 1 else runs[0].path.parent}")
        pretraining = getattr(algo, "pretraining_steps", None)
        pretrain_total = int(pretraining(algo_config)) if pretraining is not None else 0
        if step == 0 and pretrain_total > 0:  # a resumed checkpoint already holds the pretrained state
            state, train_key = pretrain(state, train_key, pretrain_total)
        bar.advance(step, {})
        while step < train.steps:
            size = min(chunk, train.steps - step)
            state, train_key, member_metrics, chunk_seconds = run_chunk(state, train_key, size, step, step + size)
            train_seconds += chunk_seconds
            step += size
            if step % train.log_every == 0 or step == train.steps:
                for index in active:
                    record = {"step": step, **member_metrics[index], "updates_per_second": step / train_seconds}
                    runs[index].append("metrics.jsonl", record)
                    if on_log:
                        on_log(record)
            evaluating = (train.eval_every and step % train.eval_every == 0) or step == train.steps
            if evaluating and probe is not None:  # losses on held-out episodes (offrl/train/validation.py)
                for index in active:
                    runs[index].append("validation.jsonl", {"step": step, **probe.metrics(member(state, index))})
            if evaluating and env_id is not None:  # no env: no rollouts (offline estimates: `offrl ope`)
                for index in active:
                    policy.state = member(state, index)
                    evals[index].append(_evaluation_record(policy, env_id, train, seeds[index], step, dataset, has_reference,
                                                           target_cost=getattr(algo_config, "target_cost", None)))
                    runs[index].append("eval.jsonl", evals[index][-1])
                bar.report_eval(_mean_record([evals[index][-1] for index in active]))
            if (train.checkpoint_every and step % train.checkpoint_every == 0) or step == train.steps:
                for index in active:
                    last_checkpoint[index] = save_checkpoint(
                        runs[index].checkpoints, step, member(state, index), member(train_key, index),
                        {"evals": json.dumps(evals[index]), "train_seconds": train_seconds})
            bar.advance(step, member_metrics[active[0]])

    score_key = "normalized_score" if has_reference else "return_mean"
    results = []
    for index, run in enumerate(runs):
        if index not in active:
            results.append(TrainResult(run_dir=run.path, policy=None, summary=run.read_summary()))
            continue
        if not evals[index]:  # no environment: nothing was rolled out, so no final/best return
            summary = run.update_summary(
                status="finished", steps=step, online_evaluation=False,
                evaluation="none: the dataset names no environment; estimate offline with `offrl ope RUN_DIR`",
                compile_seconds=compile_seconds, train_seconds=train_seconds,
                updates_per_second=step / train_seconds if train_seconds else None, seeds_in_program=count,
                seed_axis=resolve_seed_axis(axis) if vmapped else None, finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
            )
            results.append(TrainResult(run_dir=run.path, policy=Policy(algo, member(state, index), normalizer), summary=summary))
            continue
        final, best = evals[index][-1], max(evals[index], key=lambda record: record[score_key])
        summary = run.update_summary(
            status="finished",
            steps=step,
            final_step=final["step"],
            final_return=final["return_mean"],
            best_return=best["return_mean"],
            best_step=best["step"],
            final_normalized_score=final.get("normalized_score"),
            best_normalized_score=best.get("normalized_score"),
            **_safe_summary(final),
            compile_seconds=compile_seconds,
            train_seconds=train_seconds,
            updates_per_second=step / train_seconds if train_seconds else None,
            seeds_in_program=count,
            seed_axis=resolve_seed_axis(axis) if vmapped else None,
            finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"),
        )
        results.append(TrainResult(run_dir=run.path, policy=Policy(algo, member(state, index), normalizer), summary=summary))
    return results


def _mean_record(records: list[dict[str, Any]]) -> dict[str, Any]:
    """What the progress bar shows for a group: the mean over seeds."""
    mean = {"step": records[0]["step"], "return_mean": float(np.mean([r["return_mean"] for r in records]))}
    if "normalized_score" in records[0]:
        mean["normalized_score"] = float(np.mean([r["normalized_score"] for r in records]))
    return mean
