"""The offline-to-online engine: continue an offline run online, or learn online with prior data.

`finetune(OFFLINE_RUN, ...)` loads the run's algorithm, normaliser and the state of its latest
valid checkpoint, applies the algorithm's fine-tuning settings (the module-level `FINETUNE`
dict, see below) and keeps training while interacting with a Gymnasium vector env.
`train_with_prior_data` does the same from an untrained agent (RLPD).

Data. The offline dataset sits on the device as in the offline engine (same normaliser, never
written to); the online replay buffer is preallocated on the device and donated to the compiled
step, so it is updated in place. Online transitions go through the offline run's normaliser
(observation standardisation, actions in [-1, 1], reward scale) before they are stored:
terminations as `dones = 1`, time-limit truncations as `dones = 0, timeouts = 1`.

Batches. `mixed` mode: every update's batch is round(offline_ratio * B) offline rows followed by
B - that many online rows, gathered and concatenated inside the compiled step (RLPD's symmetric
sampling at ratio 0.5, Ball et al. 2023). `wsrl` mode (Zhou et al. 2024, "Efficient Online RL
Fine-Tuning Need Not Retain Offline Data"): the first `warmup_steps` transitions are collected
with the frozen pre-trained policy and no updates, after which batches are online rows only and
the offline data is not even put on the device.

Steps. One compiled call per environment step inserts the new transitions, runs `utd * num_envs`
updates as one `lax.scan` and computes the next (exploratory) actions. During a warm-up the call
only inserts and acts: with the frozen policy, or uniformly at random when the agent starts
untrained (RLPD's `start_training`).

Per-algorithm settings. An algorithm module may define
    FINETUNE = {
        "config": {field: value},        # Config fields changed for the online phase
        "decay": {field: floor},         # field * max(floor, 1 - t / T) over the T online steps
        "offline_ratio": 0.5,            # share of offline rows per batch (mixed mode)
        "utd": 1,                        # updates per environment transition
        "warmup_steps": 0,               # transitions collected before the first update
        "exploration_noise": 0.0,        # std of Gaussian noise added to act(.., deterministic=False)
        "reset_optimizers": False,       # fresh optimiser states for the online phase
    }
(all keys optional); flags of `FinetuneConfig` override the engine settings. The engine applies
them without knowing which algorithm it runs.

Evaluation and metrics. The deterministic policy is evaluated before any online step (the
score "before"), every `eval_every` transitions and at the end. Regret follows CORL's
fine-tuning scripts (algorithms/finetune/cql.py): `regret` = mean over the online evaluations of
1 - clip(normalised score / 100, 0, 1); `train_regret` the same over the training episodes.

Run directory and resume. The fine-tuning run writes its own directory: config.json names the
offline run (path, checkpoint file, step and SHA-256), the fine-tuning config and the resolved
settings; eval.jsonl and metrics.jsonl carry `online_step`; summary.json the scores before and
after, best, regret, online steps and wall time. Checkpoints hold the agent state (loadable by
`offrl.load_policy` like any run), the key, the step, the filled part of the replay buffer,
the evaluation history, each sub-env's episode number and steps into it, the next actions and
the metric sums of the log line in progress. `resume_finetune` continues from the latest valid
one. Every training episode starts from a seeded reset (episode e of sub-env i: `episode_seed(seed,
i, e)` in loop.py), so a resume from a checkpoint at an episode boundary (every sub-env's) is
bit-identical on CPU to the uninterrupted run. The environments' physical state cannot be
checkpointed: a resume from a mid-episode checkpoint restores everything above exactly but starts
a fresh episode where the interrupted one was (its transitions stay in the buffer as a cut
episode), so from there on it is a valid continuation, not the uninterrupted run (records.py).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import jax

from offrl.algos import get_algorithm
from offrl.data.dataset import Dataset
from offrl.data.transforms import Normalizer, fit_normalizer
from offrl.envs.factory import action_bounds, check_env_id
from offrl.errors import ConfigError
from offrl.train.checkpoint import latest_valid_checkpoint
from offrl.train.configs import config_from_json, validate_algorithm_config
from offrl.train.extra_fields import check_online_fields
from offrl.train.finetune import loop, records
from offrl.train.finetune.settings import (
    EngineSettings,
    FinetuneConfig,
    online_algorithm_config,
    resolve_settings,
)
from offrl.train.initial_state import init_state
from offrl.train.offline import load_recorded_dataset, recorded_run
from offrl.train.policy import Policy
from offrl.train.run_dir import RunDirectory
from offrl.types import Spec


def finetune(
    offline_run: str | Path,
    finetune_config: FinetuneConfig,
    run_dir: str | Path,
    dataset: Dataset | None = None,
    progress: bool = True,
    on_log: Callable[[dict[str, Any]], None] | None = None,
) -> records.FinetuneResult:
    """Fine-tune the agent of the offline run in `offline_run` online; write the run `run_dir`.

    `dataset` defaults to the one the offline run's config.json names; its fingerprint must be
    the recorded one (the offline data mixed into the batches is the data the agent saw).
    """
    finetune_config.validate()
    algo, offline_config, _, record = recorded_run(offline_run)
    if dataset is None:
        dataset = load_recorded_dataset(record)
    records.check_fingerprint(dataset, record, offline_run)
    settings = resolve_settings(algo, finetune_config)
    algo_config = online_algorithm_config(algo, offline_config, settings)
    normalizer = Normalizer.from_json(record["normalizer"])
    spec = Spec(**record["spec"])
    offline_dir = RunDirectory.open(offline_run, lock=False)
    template = init_state(algo, jax.random.PRNGKey(0), spec, algo_config)
    checkpoint = latest_valid_checkpoint(offline_dir.checkpoints, template)
    if checkpoint is None:
        raise ConfigError(f"Offline run '{offline_dir.path}' has no checkpoint; expected checkpoints/step_*.msgpack.")
    source = {
        "path": str(offline_dir.path.resolve()),
        "checkpoint": checkpoint.path.name,
        "step": checkpoint.step,
        "sha256": hashlib.sha256(checkpoint.path.read_bytes()).hexdigest(),
        "algorithm_config": record["algorithm_config"],
    }
    env_id = finetune_config.env_id or record.get("env_id") or dataset.metadata.env_id
    return _start(algo, algo_config, dataset, normalizer, finetune_config, settings, run_dir, env_id,
                  record.get("dataset"), source, checkpoint.state, progress, on_log)


def train_with_prior_data(
    algo: ModuleType,
    algo_config: Any,
    dataset: Dataset,
    finetune_config: FinetuneConfig,
    run_dir: str | Path,
    dataset_reference: dict[str, Any] | None = None,
    progress: bool = True,
    on_log: Callable[[dict[str, Any]], None] | None = None,
) -> records.FinetuneResult:
    """Train `algo` online from an untrained state with `dataset` as prior data (RLPD)."""
    finetune_config.validate()
    validate_algorithm_config(algo_config)
    settings = resolve_settings(algo, finetune_config)
    algo_config = online_algorithm_config(algo, algo_config, settings)
    env_id = finetune_config.env_id or dataset.metadata.env_id
    if env_id is None:
        raise ConfigError(f"{dataset.where} records no environment id; expected --env ENV_ID.")
    check_env_id(env_id)
    low = high = None
    if dataset.metadata.action_low is None:
        low, high = action_bounds(env_id)
    normalizer = fit_normalizer(dataset, algo_config.normalize_observations, algo_config.normalize_rewards, low, high)
    return _start(algo, algo_config, dataset, normalizer, finetune_config, settings, run_dir, env_id,
                  dataset_reference, None, None, progress, on_log)


def resume_finetune(
    run_dir: str | Path,
    dataset: Dataset | None = None,
    progress: bool = True,
    on_log: Callable[[dict[str, Any]], None] | None = None,
) -> records.FinetuneResult:
    """Continue the fine-tuning run in `run_dir` from its latest valid checkpoint."""
    run = RunDirectory.open(run_dir, lock=False)
    record = run.read_config()
    where = str(run.path / "config.json")
    if record.get("kind") != "finetune":
        raise ConfigError(f"'{where}' is not a fine-tuning run; expected a run written by `offrl finetune` or `offrl train rlpd`.")
    algo = get_algorithm(record["algorithm"])
    algo_config = config_from_json(algo.Config, record["algorithm_config"], where=where)
    finetune_config = config_from_json(FinetuneConfig, record["finetune"], where=where)
    settings = EngineSettings(**record["settings"])
    if dataset is None:
        dataset = load_recorded_dataset(record)
    records.check_fingerprint(dataset, record, run_dir)
    normalizer = Normalizer.from_json(record["normalizer"])
    run = RunDirectory.open(run_dir)
    try:
        summary = run.read_summary() if (run.path / "summary.json").exists() else {}
        if summary.get("status") == "finished":
            template = init_state(algo, jax.random.PRNGKey(0), Spec(**record["spec"]), algo_config)
            checkpoint = latest_valid_checkpoint(run.checkpoints, template)
            if checkpoint is None:
                raise ConfigError(f"Run '{run.path}' is finished but has no checkpoint; expected checkpoints/step_*.msgpack.")
            run.unlock()
            return records.FinetuneResult(run.path, Policy(algo, checkpoint.state, normalizer), summary, checkpoint.state,
                                  settings, None)
        if summary.get("status") == "diverged":
            raise ConfigError(f"Run '{run.path}' diverged (see its summary.json); resuming it would diverge again.")
        initial_state = None
        source = record.get("offline_run")
        if source is not None:  # needed only when the run was killed before its first checkpoint
            initial_state = records.offline_state(algo, algo_config, record, source)
    except BaseException:
        run.unlock()
        raise
    return records.guarded(run, lambda: loop.train_loop(algo, algo_config, dataset, normalizer, finetune_config, settings, run,
                                             record["env_id"], initial_state, progress, on_log, resume=True))


def _start(algo, algo_config, dataset, normalizer, finetune_config, settings, run_dir, env_id,
           dataset_reference, source, initial_state, progress, on_log) -> records.FinetuneResult:
    check_online_fields(algo, algo_config)  # before the run directory: COptiDICE's initial-state weights need a fixed dataset
    check_env_id(env_id)
    record = records.run_record(algo, algo_config, finetune_config, settings, env_id, dataset, dataset_reference,
                                normalizer, source)
    run = RunDirectory.create(run_dir, record)
    return records.guarded(run, lambda: loop.train_loop(algo, algo_config, dataset, normalizer, finetune_config, settings, run,
                                             env_id, initial_state, progress, on_log, resume=False))
