"""Fine-tuning settings: the user's flags (`FinetuneConfig`), the algorithm's `FINETUNE` dict, and
the engine settings resolved from both (`EngineSettings`); the algorithm config and state for the
online phase."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
from flax.training.train_state import TrainState

from offrl.errors import ConfigError
from offrl.train.configs import validate_algorithm_config

MODES = ("mixed", "wsrl")
FINETUNE_KEYS = ("config", "decay", "offline_ratio", "utd", "warmup_steps", "exploration_noise", "reset_optimizers")
WSRL_WARMUP_STEPS = 5_000  # Zhou et al. 2024: 5,000 warm-up transitions from the frozen policy


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
    changes = {}
    for f in dataclasses.fields(state):
        value = getattr(state, f.name)
        if isinstance(value, TrainState):
            changes[f.name] = value.replace(opt_state=value.tx.init(value.params))
    return state.replace(**changes) if changes else state
