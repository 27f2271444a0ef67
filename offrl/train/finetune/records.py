"""The fine-tuning run's records: config.json (what the run started from), checkpoints (agent,
key, step, the filled part of the replay buffer, the evaluation history, where each sub-env is in
its episodes), summary.json (scores before and after, regret), and the guard that marks a run
failed, interrupted or diverged.

What a resume restores, and when it is exact. A checkpoint restores the agent state (parameters,
optimiser states, target networks, counters), the engine key, the step, the filled part of the
replay buffer, the evaluation history, the training-episode returns and the metric sums of the
log line in progress, all exactly. The simulator's physical state cannot be checkpointed in
general, so the environments are reset on resume, each sub-env from its seeded episode reset
(`loop.episode_seed`):
- checkpoint at an episode boundary of every sub-env (Pendulum's 200-step episodes with
  checkpoint_every a multiple of 200 and one env): the resumed run starts the very episodes the
  uninterrupted run started, with the same next actions (stored), so on CPU the whole run is
  bit-identical to the uninterrupted one: buffer, parameters, metrics, evaluations, scores;
- checkpoint mid-episode: the interrupted episode cannot be continued. The resumed run starts a
  fresh episode instead (the next seed of that sub-env); the interrupted episode's transitions
  stay in the buffer as a cut episode (neither a termination nor a timeout, so they bootstrap),
  its return is not counted, and fields known only at an episode's end (Cal-QL's mc_returns)
  keep their placeholder for those rows. Everything restored above is still exact; what follows
  is a valid continuation, not the uninterrupted run's.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from offrl.data.dataset import Dataset
from offrl.data.fingerprint import dataset_fingerprint
from offrl.data.transforms import Normalizer
from offrl.errors import ConfigError
from offrl.evaluate.scores import normalized_score
from offrl.train.checkpoint import checkpoint_files, latest_valid_checkpoint, load_checkpoint, save_checkpoint
from offrl.train.configs import config_to_json
from offrl.train.divergence import DivergenceError
from offrl.train.finetune.settings import EngineSettings, FinetuneConfig
from offrl.train.initial_state import init_state
from offrl.train.policy import Policy
from offrl.train.run_dir import RunDirectory
from offrl.train.run_record import common_record
from offrl.types import Spec

CHECKPOINTS_KEPT = 2  # each holds the replay buffer, so older ones are deleted


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


def run_record(algo, algo_config, finetune_config: FinetuneConfig, settings: EngineSettings, env_id: str,
               dataset: Dataset, dataset_reference: dict[str, Any] | None, normalizer: Normalizer,
               source: dict[str, Any] | None) -> dict[str, Any]:
    """config.json of a fine-tuning run: everything needed to rerun or resume it."""
    return {
        "kind": "finetune",
        **common_record(algo, algo_config, env_id, dataset, dataset_reference, normalizer),
        "finetune": config_to_json(finetune_config),
        "settings": dataclasses.asdict(settings),
        "offline_run": source,  # None: trained from scratch with the dataset as prior data
    }


@dataclass
class ResumePoint:
    """Where a run continues: the latest valid checkpoint's state, key and engine records."""

    state: Any
    key: jax.Array
    step: int
    rows: int
    evals: list[dict[str, Any]]
    episode_returns: list[float]
    train_seconds: float
    wall_seconds: float
    metrics_sum: dict[str, float] = field(default_factory=dict)
    metrics_count: int = 0
    env_episodes: list[int] | None = None  # None: a checkpoint written before episodes were seeded
    episode_steps: list[int] | None = None
    next_actions: np.ndarray | None = None


@dataclass
class EpisodePosition:
    """Where the loop stands at a checkpoint, beyond the agent: each sub-env's episode number and
    steps into it (0: at a boundary), the actions already chosen for the next step and the metric
    sums of the log line in progress."""

    env_episodes: list[int]
    episode_steps: list[int]
    next_actions: np.ndarray
    metrics_sum: dict[str, float]
    metrics_count: int


def restore(run: RunDirectory, template: Any, buffer: dict[str, jax.Array], capacity: int
            ) -> tuple[ResumePoint | None, dict[str, jax.Array]]:
    """The latest valid checkpoint (None before the first) and the buffer refilled from it; the run's
    records are cut back to that step and its summary marked running again."""
    point = None
    checkpoint = latest_valid_checkpoint(run.checkpoints, template, quarantine=True)
    if checkpoint is not None:
        engine = checkpoint.engine
        rows = int(engine["buffer_rows"])
        point = ResumePoint(
            state=checkpoint.state, key=checkpoint.key, step=checkpoint.step, rows=rows,
            evals=json.loads(engine.get("evals", "[]")),
            episode_returns=json.loads(engine.get("episode_returns", "[]")),
            train_seconds=float(engine.get("train_seconds", 0.0)),
            wall_seconds=float(engine.get("wall_seconds", 0.0)),
            metrics_sum=json.loads(engine.get("metrics_sum", "{}")),
            metrics_count=int(engine.get("metrics_count", 0)),
        )
        if "env_episodes" in engine:
            point.env_episodes = [int(n) for n in json.loads(engine["env_episodes"])]
            point.episode_steps = [int(n) for n in json.loads(engine["episode_steps"])]
            point.next_actions = np.asarray(engine["next_actions"], np.float32)
        saved, filled = engine["buffer"], min(rows, capacity)
        buffer = {name: values.at[:filled].set(jnp.asarray(saved[name][:filled])) for name, values in buffer.items()}
    step = point.step if point else 0
    run.write_records("eval.jsonl", point.evals if point else [])
    kept = [r for r in run.read_records("metrics.jsonl") if r.get("online_step", step + 1) <= step]
    run.write_records("metrics.jsonl", kept)
    summary = run.read_summary() if (run.path / "summary.json").exists() else {}
    summary.pop("error", None)
    summary.update(status="running", resumed_from_steps=[*summary.get("resumed_from_steps", []), step])
    run.write_summary(summary)
    return point, buffer


def save(run: RunDirectory, step: int, state: Any, key: jax.Array, buffer: dict[str, jax.Array], rows: int,
         capacity: int, evals: list, episode_returns: list, train_seconds: float, wall_seconds: float,
         position: EpisodePosition) -> Path:
    """A checkpoint with the filled part of the buffer; keeps the newest CHECKPOINTS_KEPT."""
    filled = min(rows, capacity)
    host = jax.device_get({name: values[:filled] for name, values in buffer.items()})
    path = save_checkpoint(run.checkpoints, step, state, key, {
        "evals": json.dumps(evals),
        "episode_returns": json.dumps(episode_returns),
        "train_seconds": train_seconds,
        "wall_seconds": wall_seconds,
        "buffer_rows": rows,
        "buffer": {name: np.asarray(values) for name, values in host.items()},
        "env_episodes": json.dumps(position.env_episodes),
        "episode_steps": json.dumps(position.episode_steps),
        "next_actions": np.asarray(position.next_actions, np.float32),
        # JSON keeps each float64 sum exactly (shortest round-trip repr).
        "metrics_sum": json.dumps(position.metrics_sum),
        "metrics_count": position.metrics_count,
    })
    for old in checkpoint_files(run.checkpoints)[:-CHECKPOINTS_KEPT]:
        old.unlink(missing_ok=True)
    return path


def check_fingerprint(dataset: Dataset, record: dict[str, Any], where: str | Path) -> None:
    recorded = record.get("dataset_fingerprint")
    if recorded is not None and dataset_fingerprint(dataset)["sha256"] != recorded.get("sha256"):
        raise ConfigError(
            f"The dataset differs from the one '{where}' recorded (fingerprint "
            f"{recorded.get('sha256', '?')[:12]}); expected the same dataset."
        )


def offline_state(algo, algo_config, record, source) -> Any:
    """The offline run's state from the checkpoint file recorded at the start (SHA-256 checked)."""
    path = Path(source["path"]) / "checkpoints" / source["checkpoint"]
    if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != source["sha256"]:
        raise ConfigError(f"The offline checkpoint '{path}' is missing or changed since fine-tuning started; expected it unchanged.")
    template = init_state(algo, jax.random.PRNGKey(0), Spec(**record["spec"]), algo_config)
    state, _, _ = load_checkpoint(path, template)
    return state


def guarded(run: RunDirectory, body: Callable[[], FinetuneResult]) -> FinetuneResult:
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


def stop_diverged(run: RunDirectory, step: int, problem, last_checkpoint: Path | None) -> None:
    quantity, value, what = problem
    kept = f"the last good checkpoint is {last_checkpoint.name}" if last_checkpoint else "no checkpoint was written"
    message = f"Fine-tuning diverged by online step {step}: {what}; {kept} (try a smaller learning rate or UTD)."
    run.update_summary(status="diverged", error=message, divergence={"step": step, "quantity": quantity, "value": repr(value)})
    raise DivergenceError(message, step, quantity, value)


def regret(scores: list[float]) -> float | None:
    """CORL (algorithms/finetune/cql.py): mean of 1 - clip(normalised score / 100, 0, 1)."""
    if not scores:
        return None
    return float(np.mean(1.0 - np.clip(np.asarray(scores) / 100.0, 0.0, 1.0)))


def finetune_summary(evals, episode_returns, meta, has_reference, step, settings, compile_seconds, train_seconds, wall_seconds):
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
        summary["regret"] = regret([record["normalized_score"] for record in online_evals])
        summary["train_regret"] = regret(list(normalized_score(episode_returns, meta.ref_min_score, meta.ref_max_score))
                                          if episode_returns else [])
    return summary
