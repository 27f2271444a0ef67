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
`offrl.load_policy` like any run), the key, the step, the filled part of the replay buffer and
the evaluation history. `resume_finetune` continues from the latest valid one. The environments
themselves cannot be checkpointed: a resumed run starts fresh episodes (the interrupted
episode's transitions stay in the buffer), so it is not bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from offrl.data.dataset import Dataset
from offrl.data.fingerprint import dataset_fingerprint
from offrl.data.transforms import Normalizer, fit_normalizer, training_arrays
from offrl.envs.factory import action_bounds, check_env_id, make_vector_env
from offrl.errors import ConfigError
from offrl.evaluate.rollout import evaluate_policy
from offrl.evaluate.scores import normalized_score
from offrl.train.checkpoint import checkpoint_files, latest_valid_checkpoint, save_checkpoint
from offrl.train.configs import config_from_json, config_to_json, validate_algorithm_config
from offrl.train.divergence import DivergenceError, all_finite, find_divergence
from offrl.train.extra_fields import PENDING, declared_fields, episode_extra_values, offline_extra_arrays, online_row_values
from offrl.train.fused import gather_batch
from offrl.train.online import REPLAY_FIELDS, allocate_buffer, insert_rows, step_envs
from offrl.train.policy import Policy
from offrl.train.run_dir import RunDirectory
from offrl.types import Batch, Spec
from offrl.version import __version__

MODES = ("mixed", "wsrl")
FINETUNE_KEYS = ("config", "decay", "offline_ratio", "utd", "warmup_steps", "exploration_noise", "reset_optimizers")
WSRL_WARMUP_STEPS = 5_000  # Zhou et al. 2024: 5,000 warm-up transitions from the frozen policy
CHECKPOINTS_KEPT = 2  # each holds the replay buffer, so older ones are deleted


@dataclass(frozen=True)
class FinetuneConfig:
    online_steps: int = 100_000  # environment transitions of online interaction (summed over sub-envs)
    mode: str = "mixed"  # mixed: offline and online rows in every batch; wsrl: online rows only after the warm-up
    offline_ratio: float | None = None  # share of offline rows per batch (None: the algorithm's FINETUNE value, else 0.5 as RLPD)
    utd: int | None = None  # updates per environment transition (None: the algorithm's FINETUNE value, else 1)
    warmup_steps: int | None = None  # transitions before the first update (None: FINETUNE's value, else 5000 for wsrl, 0 for mixed)
    exploration_noise: float | None = None  # Gaussian action noise std while collecting (None: FINETUNE's value, else 0)
    eval_every: int = 5_000  # transitions between evaluations (CORL fine-tuning: eval_freq 5000)
    eval_episodes: int = 10  # D4RL protocol: 10 episodes per evaluation
    log_every: int = 1_000  # transitions between metric lines
    checkpoint_every: int = 10_000  # transitions between checkpoints (the last step is always saved)
    buffer_size: int | None = None  # online replay capacity (None: online_steps, nothing is overwritten)
    num_envs: int = 1  # parallel training environments
    seed: int = 0
    env_id: str | None = None  # environment (default: the offline run's)
    max_abs_q: float = 1e6  # a q_* metric beyond this magnitude stops the run as diverged

    def validate(self) -> None:
        for name in ("online_steps", "eval_episodes", "log_every", "num_envs"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} is {getattr(self, name)}; expected a positive integer.")
        for name in ("eval_every", "checkpoint_every", "warmup_steps"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"--{name.replace('_', '-')} is {value}; expected 0 or a positive integer.")
        if self.mode not in MODES:
            raise ConfigError(f"--mode is {self.mode!r}; expected one of: {', '.join(MODES)}.")
        if self.offline_ratio is not None and not 0.0 <= self.offline_ratio <= 1.0:
            raise ConfigError(f"--offline-ratio is {self.offline_ratio}; expected a value in [0, 1].")
        if self.utd is not None and self.utd <= 0:
            raise ConfigError(f"--utd is {self.utd}; expected a positive integer.")
        if self.exploration_noise is not None and not self.exploration_noise >= 0.0:
            raise ConfigError(f"--exploration-noise is {self.exploration_noise}; expected 0 or a positive number.")
        if self.buffer_size is not None and self.buffer_size < self.num_envs:
            raise ConfigError(f"--buffer-size is {self.buffer_size}; expected at least --num-envs ({self.num_envs}).")
        if not (self.max_abs_q > 0):
            raise ConfigError(f"--max-abs-q is {self.max_abs_q}; expected a positive number.")


@dataclass(frozen=True)
class EngineSettings:
    """What one run does: FinetuneConfig's flags over the algorithm's FINETUNE over the defaults."""

    mode: str
    offline_ratio: float
    utd: int
    warmup_steps: int
    exploration_noise: float
    reset_optimizers: bool
    decay: dict[str, float]
    config_overrides: dict[str, Any]

    @property
    def uses_offline_data(self) -> bool:
        return self.mode == "mixed" and self.offline_ratio > 0.0


@dataclass
class FinetuneResult:
    run_dir: Path
    policy: Policy
    summary: dict[str, Any]
    state: Any
    settings: EngineSettings
    offline_data: dict[str, jax.Array] | None  # the device arrays the batches were drawn from
    buffer: dict[str, np.ndarray] = field(default_factory=dict)  # host copy of the online buffer
    buffer_rows: int = 0  # transitions inserted (more than the capacity once it wrapped)


# ----------------------------------------------------------------------------- settings
def algorithm_finetune_settings(algo: ModuleType) -> dict[str, Any]:
    settings = dict(getattr(algo, "FINETUNE", {}) or {})
    unknown = sorted(set(settings) - set(FINETUNE_KEYS))
    if unknown:
        raise ConfigError(
            f"{algo.__name__}.FINETUNE has unknown key {unknown[0]!r}; expected keys from: {', '.join(FINETUNE_KEYS)}."
        )
    return settings


def resolve_settings(algo: ModuleType, finetune: FinetuneConfig) -> EngineSettings:
    """The run's engine settings; flags given in `finetune` win over the algorithm's FINETUNE."""
    defaults = algorithm_finetune_settings(algo)

    def pick(name: str, fallback: Any) -> Any:
        flag = getattr(finetune, name)
        return flag if flag is not None else defaults.get(name, fallback)

    wsrl = finetune.mode == "wsrl"
    return EngineSettings(
        mode=finetune.mode,
        offline_ratio=0.0 if wsrl else float(pick("offline_ratio", 0.5)),
        utd=int(pick("utd", 1)),
        # WSRL's warm-up is its own (Zhou et al. 2024), not the algorithm's mixed-mode warm-up.
        warmup_steps=int(finetune.warmup_steps if finetune.warmup_steps is not None
                         else WSRL_WARMUP_STEPS if wsrl else defaults.get("warmup_steps", 0)),
        exploration_noise=float(pick("exploration_noise", 0.0)),
        reset_optimizers=bool(defaults.get("reset_optimizers", False)),
        decay={name: float(floor) for name, floor in (defaults.get("decay") or {}).items()},
        config_overrides=dict(defaults.get("config") or {}),
    )


def online_algorithm_config(algo: ModuleType, algo_config: Any, settings: EngineSettings) -> Any:
    """The algorithm's Config for the online phase: FINETUNE's "config" fields applied."""
    names = {f.name for f in dataclasses.fields(algo_config)}
    for name in [*settings.config_overrides, *settings.decay]:
        if name not in names:
            raise ConfigError(f"{algo.__name__}.FINETUNE names field {name!r}, which {algo.NAME}'s Config does not have.")
    config = dataclasses.replace(algo_config, **settings.config_overrides)
    validate_algorithm_config(config)
    return config


def decayed_config(config: Any, decay: dict[str, float], progress: jax.Array) -> Any:
    """`config` with each decayed field scaled by max(floor, 1 - progress) (traced; used inside jit)."""
    if not decay:
        return config
    return dataclasses.replace(config, **{
        name: getattr(config, name) * jnp.maximum(floor, 1.0 - progress) for name, floor in decay.items()
    })


def reset_optimizers(state: Any) -> Any:
    """Every TrainState field of `state` with a fresh optimiser state (SPOT's fine-tuning reset)."""
    from flax.training.train_state import TrainState

    changes = {}
    for f in dataclasses.fields(state):
        value = getattr(state, f.name)
        if isinstance(value, TrainState):
            changes[f.name] = value.replace(opt_state=value.tx.init(value.params))
    return state.replace(**changes) if changes else state


def init_state(algo: ModuleType, key: jax.Array, spec: Spec, config: Any) -> Any:
    """`algo.init` compiled: eager Flax init of a vmapped ensemble runs op by op (RLPD's ten
    critics took over 10 s on CPU here), one compiled call takes a fraction of that."""
    return jax.jit(algo.init, static_argnums=(1, 2))(key, spec, config)


# ------------------------------------------------------------------------------ batches
def sample_mixed_batch(offline: dict[str, jax.Array] | None, online: dict[str, jax.Array], key: jax.Array,
                       batch_size: int, offline_rows: int, online_size: jax.Array) -> Batch:
    """`offline_rows` uniform rows of `offline` followed by `batch_size - offline_rows` uniform
    rows among the first `online_size` (traced) rows of `online`."""
    offline_key, online_key = jax.random.split(key)
    parts = []
    if offline_rows:
        count = offline["rewards"].shape[0]
        parts.append(gather_batch(offline, jax.random.randint(offline_key, (offline_rows,), 0, count)))
    if batch_size - offline_rows:
        index = jax.random.randint(online_key, (batch_size - offline_rows,), 0, online_size)
        parts.append(gather_batch(online, index))
    return Batch(**{name: jnp.concatenate([part[name] for part in parts]) for name in parts[0]})


def make_mixed_update(algo: ModuleType, num_updates: int, batch_size: int, offline_rows: int) -> Callable:
    """`fused(state, offline, online, key, online_size, config) -> (state, metrics)`: a scan of
    `num_updates` updates on mixed batches; metrics averaged with nanmean (as the offline engine)."""

    def fused(state, offline, online, key, online_size, config):
        def one(state, update_key):
            batch = sample_mixed_batch(offline, online, update_key, batch_size, offline_rows, online_size)
            return algo.update(state, batch, config)

        state, metrics = jax.lax.scan(one, state, jax.random.split(key, num_updates))
        return state, jax.tree.map(jnp.nanmean, metrics)

    return fused


# ------------------------------------------------------------------------ entry points
def finetune(
    offline_run: str | Path,
    finetune_config: FinetuneConfig,
    run_dir: str | Path,
    dataset: Dataset | None = None,
    progress: bool = True,
    on_log: Callable[[dict[str, Any]], None] | None = None,
) -> FinetuneResult:
    """Fine-tune the agent of the offline run in `offline_run` online; write the run `run_dir`.

    `dataset` defaults to the one the offline run's config.json names; its fingerprint must be
    the recorded one (the offline data mixed into the batches is the data the agent saw).
    """
    from offrl.train.offline import load_recorded_dataset, recorded_run

    finetune_config.validate()
    algo, offline_config, _, record = recorded_run(offline_run)
    if dataset is None:
        dataset = load_recorded_dataset(record)
    _check_fingerprint(dataset, record, offline_run)
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
) -> FinetuneResult:
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
) -> FinetuneResult:
    """Continue the fine-tuning run in `run_dir` from its latest valid checkpoint."""
    from offrl.algos import get_algorithm
    from offrl.train.offline import load_recorded_dataset

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
    _check_fingerprint(dataset, record, run_dir)
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
            return FinetuneResult(run.path, Policy(algo, checkpoint.state, normalizer), summary, checkpoint.state,
                                  settings, None)
        if summary.get("status") == "diverged":
            raise ConfigError(f"Run '{run.path}' diverged (see its summary.json); resuming it would diverge again.")
        initial_state = None
        source = record.get("offline_run")
        if source is not None:  # needed only when the run was killed before its first checkpoint
            initial_state = _offline_state(algo, algo_config, record, source)
    except BaseException:
        run.unlock()
        raise
    return _guarded(run, lambda: _train_loop(algo, algo_config, dataset, normalizer, finetune_config, settings, run,
                                             record["env_id"], initial_state, progress, on_log, resume=True))


# -------------------------------------------------------------------------- internals
def _check_fingerprint(dataset: Dataset, record: dict[str, Any], where: str | Path) -> None:
    recorded = record.get("dataset_fingerprint")
    if recorded is not None and dataset_fingerprint(dataset)["sha256"] != recorded.get("sha256"):
        raise ConfigError(
            f"The dataset differs from the one '{where}' recorded (fingerprint "
            f"{recorded.get('sha256', '?')[:12]}); expected the same dataset."
        )


def _offline_state(algo, algo_config, record, source) -> Any:
    """The offline run's state from the checkpoint file recorded at the start (SHA-256 checked)."""
    from offrl.train.checkpoint import load_checkpoint

    path = Path(source["path"]) / "checkpoints" / source["checkpoint"]
    if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != source["sha256"]:
        raise ConfigError(f"The offline checkpoint '{path}' is missing or changed since fine-tuning started; expected it unchanged.")
    template = init_state(algo, jax.random.PRNGKey(0), Spec(**record["spec"]), algo_config)
    state, _, _ = load_checkpoint(path, template)
    return state


def _start(algo, algo_config, dataset, normalizer, finetune_config, settings, run_dir, env_id,
           dataset_reference, source, initial_state, progress, on_log) -> FinetuneResult:
    check_env_id(env_id)
    record = {
        "kind": "finetune",
        "algorithm": algo.NAME,
        "algorithm_config": config_to_json(algo_config),
        "finetune": config_to_json(finetune_config),
        "settings": dataclasses.asdict(settings),
        "offline_run": source,  # None: trained from scratch with the dataset as prior data
        "env_id": env_id,
        "dataset": dataset_reference or {"name": dataset.metadata.name, "source": dataset.metadata.source},
        "dataset_metadata": dataset.metadata.to_json(),
        "dataset_fingerprint": dataset_fingerprint(dataset),
        "spec": {"observation_dim": dataset.spec.observation_dim, "action_dim": dataset.spec.action_dim},
        "normalizer": normalizer.to_json(),
        "offrl_version": __version__,
        "jax_version": jax.__version__,
        "device": str(jax.devices()[0]),
    }
    run = RunDirectory.create(run_dir, record)
    return _guarded(run, lambda: _train_loop(algo, algo_config, dataset, normalizer, finetune_config, settings, run,
                                             env_id, initial_state, progress, on_log, resume=False))


def _guarded(run: RunDirectory, body: Callable[[], FinetuneResult]) -> FinetuneResult:
    try:
        return body()
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


def _regret(scores: list[float]) -> float | None:
    """CORL (algorithms/finetune/cql.py): mean of 1 - clip(normalised score / 100, 0, 1)."""
    if not scores:
        return None
    return float(np.mean(1.0 - np.clip(np.asarray(scores) / 100.0, 0.0, 1.0)))


def _pad_length(n: int) -> int:
    return 1 << max(0, int(n - 1).bit_length())


def _train_loop(algo, algo_config, dataset, normalizer, finetune, settings, run, env_id, initial_state,
                progress, on_log, resume) -> FinetuneResult:
    spec = dataset.spec
    meta = dataset.metadata
    has_reference = meta.ref_min_score is not None and meta.ref_max_score is not None
    extra = declared_fields(algo)
    buffer_fields = REPLAY_FIELDS + extra
    num_envs = finetune.num_envs
    capacity = max(finetune.buffer_size or finetune.online_steps, num_envs)
    batch_size = algo_config.batch_size
    offline_rows = int(round(settings.offline_ratio * batch_size)) if settings.uses_offline_data else 0
    warmup, total = settings.warmup_steps, finetune.online_steps
    from_scratch = run.read_config().get("offline_run") is None

    # Offline data on the device, transformed exactly as the offline run saw it; read, never written.
    offline = None
    if offline_rows:
        arrays = training_arrays(dataset, normalizer)
        arrays.update(offline_extra_arrays(algo, algo_config, dataset, normalizer))
        offline = jax.device_put(arrays)

    key = jax.random.PRNGKey(finetune.seed)
    init_key, key = jax.random.split(key)
    template = init_state(algo, init_key, spec, algo_config)
    state = template if initial_state is None else initial_state
    if settings.reset_optimizers and initial_state is not None:
        state = reset_optimizers(state)
    buffer = allocate_buffer(capacity, spec, buffer_fields)
    for name in extra:
        if name in PENDING:
            buffer[name] = jnp.full((capacity,), PENDING[name], jnp.float32)
    step, rows, evals, episode_returns, train_seconds, wall_before = 0, 0, [], [], 0.0, 0.0
    if resume:
        checkpoint = latest_valid_checkpoint(run.checkpoints, template, quarantine=True)
        if checkpoint is not None:
            state, key, step = checkpoint.state, checkpoint.key, checkpoint.step
            engine = checkpoint.engine
            evals = json.loads(engine.get("evals", "[]"))
            episode_returns = json.loads(engine.get("episode_returns", "[]"))
            train_seconds = float(engine.get("train_seconds", 0.0))
            wall_before = float(engine.get("wall_seconds", 0.0))
            rows = int(engine["buffer_rows"])
            saved = engine["buffer"]
            filled = min(rows, capacity)
            buffer = {name: values.at[:filled].set(jnp.asarray(saved[name][:filled])) for name, values in buffer.items()}
        run.write_records("eval.jsonl", evals)
        kept = [r for r in run.read_records("metrics.jsonl") if r.get("online_step", step + 1) <= step]
        run.write_records("metrics.jsonl", kept)
        summary = run.read_summary() if (run.path / "summary.json").exists() else {}
        summary.pop("error", None)
        summary.update(status="running", resumed_from_steps=[*summary.get("resumed_from_steps", []), step])
        run.write_summary(summary)

    low, high = normalizer.action_low, normalizer.action_high
    mean, std = normalizer.observation_mean, normalizer.observation_std
    reward_scale = np.float32(normalizer.reward_scale)
    online_config = algo_config
    fused = make_mixed_update(algo, settings.utd * num_envs, batch_size, offline_rows)

    def explore(state, observations, key):
        noise_key, act_key = jax.random.split(key)
        actions = algo.act(state, observations, act_key, False)
        if settings.exploration_noise > 0:
            actions = actions + settings.exploration_noise * jax.random.normal(noise_key, actions.shape)
        return jnp.clip(actions, -1.0, 1.0)

    def warmup_actions(state, observations, key):
        if from_scratch:  # an untrained agent collects with uniform actions (RLPD's start_training)
            return jax.random.uniform(key, (observations.shape[0], spec.action_dim), minval=-1.0, maxval=1.0)
        return explore(state, observations, key)

    def learn_step(state, buffer, offline, transitions, position, size, observations, key, progress):
        buffer = insert_rows(buffer, transitions, position)
        key, update_key, act_key = jax.random.split(key, 3)
        config = decayed_config(online_config, settings.decay, progress)
        state, metrics = fused(state, offline, buffer, update_key, size, config)
        return state, buffer, explore(state, observations, act_key), metrics, key

    def collect_step(state, buffer, transitions, position, observations, key):
        buffer = insert_rows(buffer, transitions, position)
        key, act_key = jax.random.split(key)
        return buffer, warmup_actions(state, observations, act_key), key

    def first_actions(state, observations, key, learning):
        key, act_key = jax.random.split(key)
        return (explore if learning else warmup_actions)(state, observations, act_key), key

    def write_field(buffer, name, index, values):
        return {**buffer, name: buffer[name].at[index].set(values, mode="drop")}

    learn_jit = jax.jit(learn_step, donate_argnums=1)
    collect_jit = jax.jit(collect_step, donate_argnums=1)
    first_jit = jax.jit(first_actions, static_argnums=3)
    write_jit = jax.jit(write_field, donate_argnums=0, static_argnums=1)
    policy = Policy(algo, state, normalizer)

    def evaluate(state, online_step):
        policy.state = state
        stats = evaluate_policy(policy, env_id, finetune.eval_episodes, seed=finetune.seed + 10_000)
        record = {"online_step": online_step, "step": online_step,  # `step` for tools that read any run
                  "return_mean": stats.mean_return, "return_std": float(np.std(stats.returns)),
                  "returns": stats.returns.tolist(), "lengths": stats.lengths.tolist()}
        if has_reference:
            scores = normalized_score(stats.returns, meta.ref_min_score, meta.ref_max_score)
            record["normalized_score"] = float(np.mean(scores))
            record["normalized_score_std"] = float(np.std(scores))
        run.append("eval.jsonl", record)
        return record

    def normalize(observations):
        return ((observations - mean) / std).astype(np.float32)

    from offrl.train.progress import TrainingProgress

    started = time.perf_counter()
    compile_seconds = 0.0
    envs = make_vector_env(env_id, num_envs)
    if envs.single_observation_space.shape != (spec.observation_dim,) or envs.single_action_space.shape != (spec.action_dim,):
        envs.close()
        raise ConfigError(
            f"Environment {env_id!r} has observation shape {envs.single_observation_space.shape} and action shape "
            f"{envs.single_action_space.shape}; expected ({spec.observation_dim},) and ({spec.action_dim},) like the dataset."
        )
    metrics_sum: dict[str, float] = {}
    metrics_count, pending, last_metrics = 0, [], {}
    episode_globals = [[] for _ in range(num_envs)]  # global insert index of each row of the running episode
    episode_rewards = [[] for _ in range(num_envs)]  # its scaled rewards (for extra fields)
    running_returns = np.zeros(num_envs)
    last_checkpoint: Path | None = None
    try:
        with TrainingProgress(total, enabled=progress, description="fine-tuning") as bar:
            what = f"resumed at online step {step}" if resume else f"{total} online steps"
            bar.log(f"{algo.NAME} on {env_id} ({settings.mode}, offline ratio {settings.offline_ratio:g}, "
                    f"UTD {settings.utd}): {what} -> {run.path}")
            if not evals:
                evals.append(evaluate(state, 0))
                bar.report_eval(evals[-1])
            observations_raw, _ = envs.reset(seed=finetune.seed + step)
            observations = normalize(observations_raw.astype(np.float32))
            actions, key = first_jit(state, observations, key, step >= warmup)
            actions = np.asarray(actions)
            next_eval = (step // finetune.eval_every + 1) * finetune.eval_every if finetune.eval_every else None
            next_log = (step // finetune.log_every + 1) * finetune.log_every
            next_checkpoint = ((step // finetune.checkpoint_every + 1) * finetune.checkpoint_every
                               if finetune.checkpoint_every else None)
            bar.advance(step, {})
            while step < total:
                transitions, next_raw, done, raw_rewards = step_envs(envs, observations_raw, actions, low, high)
                transitions["observations"] = observations
                transitions["next_observations"] = normalize(transitions["next_observations"])
                transitions["rewards"] = transitions["rewards"] * reward_scale
                for name in extra:
                    transitions[name] = online_row_values(name, transitions)
                position = rows % capacity
                for i in range(num_envs):
                    episode_globals[i].append(rows + i)
                    episode_rewards[i].append(float(transitions["rewards"][i]))
                rows += num_envs
                step += num_envs
                observations_raw, observations = next_raw, normalize(next_raw)
                if step > warmup:
                    progress_fraction = jnp.float32(max(0, step - warmup) / max(1, total - warmup))
                    call_started = time.perf_counter()
                    state, buffer, actions, metrics, key = learn_jit(
                        state, buffer, offline, transitions, jnp.int32(position), jnp.int32(min(rows, capacity)),
                        observations, key, progress_fraction)
                    actions = np.asarray(actions)  # the host needs them now: this waits for the updates
                    if compile_seconds == 0.0:
                        compile_seconds = time.perf_counter() - call_started
                    train_seconds += time.perf_counter() - call_started
                    pending.append(metrics)
                else:
                    buffer, actions, key = collect_jit(state, buffer, transitions, jnp.int32(position), observations, key)
                    actions = np.asarray(actions)

                running_returns += raw_rewards
                for i in np.flatnonzero(done):
                    episode_returns.append(float(running_returns[i]))
                    running_returns[i] = 0.0
                    for name in (name for name in extra if name in PENDING):  # fields known at episode end
                        buffer = _write_episode_field(write_jit, buffer, name, episode_globals[i], episode_rewards[i],
                                                      bool(transitions["dones"][i]), rows, capacity, online_config)
                    episode_globals[i], episode_rewards[i] = [], []

                if pending and (len(pending) >= 100 or step >= next_log or step >= total):
                    for record in jax.device_get(pending):
                        for name, value in record.items():
                            metrics_sum[name] = metrics_sum.get(name, 0.0) + float(value)
                    metrics_count += len(pending)
                    pending = []
                if step >= next_log or step >= total:
                    next_log += finetune.log_every
                    last_metrics = {name: value / max(metrics_count, 1) for name, value in metrics_sum.items()}
                    problem = find_divergence(last_metrics, state, bool(all_finite(state)), finetune.max_abs_q)
                    if problem is not None:
                        _stop_diverged(run, step, problem, last_checkpoint)
                    log = {"online_step": step, **last_metrics,
                           "train_return": float(np.mean(episode_returns[-10:])) if episode_returns else None,
                           "episodes": len(episode_returns),
                           "env_steps_per_second": step / max(time.perf_counter() - started + wall_before, 1e-9)}
                    run.append("metrics.jsonl", log)
                    if on_log is not None:
                        on_log(log)
                    metrics_sum, metrics_count = {}, 0
                if next_eval is not None and step >= next_eval or step >= total:
                    while next_eval is not None and next_eval <= step:
                        next_eval += finetune.eval_every
                    evals.append(evaluate(state, step))
                    bar.report_eval(evals[-1])
                if next_checkpoint is not None and step >= next_checkpoint or step >= total:
                    while next_checkpoint is not None and next_checkpoint <= step:
                        next_checkpoint += finetune.checkpoint_every
                    filled = min(rows, capacity)
                    host = jax.device_get({name: values[:filled] for name, values in buffer.items()})
                    last_checkpoint = save_checkpoint(run.checkpoints, step, state, key, {
                        "evals": json.dumps(evals),
                        "episode_returns": json.dumps(episode_returns),
                        "train_seconds": train_seconds,
                        "wall_seconds": wall_before + time.perf_counter() - started,
                        "buffer_rows": rows,
                        "buffer": {name: np.asarray(values) for name, values in host.items()},
                    })
                    for old in checkpoint_files(run.checkpoints)[:-CHECKPOINTS_KEPT]:
                        old.unlink(missing_ok=True)
                bar.advance(step, last_metrics)
    finally:
        envs.close()

    wall_seconds = wall_before + time.perf_counter() - started
    summary = run.update_summary(**_summary(evals, episode_returns, meta, has_reference, step, settings,
                                            compile_seconds, train_seconds, wall_seconds))
    filled = min(rows, capacity)
    host_buffer = {name: np.asarray(values)[:filled] for name, values in jax.device_get(buffer).items()}
    return FinetuneResult(run.path, Policy(algo, state, normalizer), summary, state, settings, offline,
                          host_buffer, rows)


def _write_episode_field(write_jit, buffer, name, globals_, scaled_rewards, terminal, rows, capacity, config):
    """Fill field `name` for a finished episode's rows that the buffer still holds."""
    values = episode_extra_values(name, np.asarray(scaled_rewards, np.float32), terminal, config)
    index = np.asarray(globals_, np.int64)
    alive = rows - index <= capacity  # rows not yet overwritten by newer transitions
    index, values = index[alive] % capacity, values[alive]
    size = _pad_length(len(index))
    padded_index = np.full(size, capacity, np.int32)  # out of range: dropped by the scatter
    padded_index[: len(index)] = index
    padded_values = np.zeros(size, np.float32)
    padded_values[: len(values)] = values
    return write_jit(buffer, name, jnp.asarray(padded_index), jnp.asarray(padded_values))


def _stop_diverged(run: RunDirectory, step: int, problem, last_checkpoint: Path | None) -> None:
    quantity, value, what = problem
    kept = f"the last good checkpoint is {last_checkpoint.name}" if last_checkpoint else "no checkpoint was written"
    message = f"Fine-tuning diverged by online step {step}: {what}; {kept} (try a smaller learning rate or UTD)."
    run.update_summary(status="diverged", error=message, divergence={"step": step, "quantity": quantity, "value": repr(value)})
    raise DivergenceError(message, step, quantity, value)


def _summary(evals, episode_returns, meta, has_reference, step, settings, compile_seconds, train_seconds, wall_seconds):
    before, after = evals[0], evals[-1]
    key = "normalized_score" if has_reference else "return_mean"
    best = max(evals, key=lambda record: record[key])
    online_evals = [record for record in evals if record["online_step"] > 0]
    summary = {
        "status": "finished",
        "online_steps": step,
        "return_before": before["return_mean"],
        "return_after": after["return_mean"],
        "best_return": best["return_mean"],
        "best_step": best["online_step"],
        "score_before": before.get("normalized_score"),
        "score_after": after.get("normalized_score"),
        "best_score": best.get("normalized_score"),
        "regret": None,
        "train_regret": None,
        "training_episodes": len(episode_returns),
        "updates": max(0, step - settings.warmup_steps) * settings.utd,
        "compile_seconds": compile_seconds,
        "train_seconds": train_seconds,
        "wall_seconds": wall_seconds,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if has_reference:
        summary["regret"] = _regret([record["normalized_score"] for record in online_evals])
        summary["train_regret"] = _regret(list(normalized_score(episode_returns, meta.ref_min_score, meta.ref_max_score))
                                          if episode_returns else [])
    return summary
