"""Dataset fields beyond the five every algorithm sees, provided on request.

An algorithm module that needs more per-transition data declares it:
    EXTRA_FIELDS = ("mc_returns",)
and its `Batch` then carries those fields (`offrl.types.Batch` has them as optional fields).
The engines compute each declared field once for the offline data (`offline_extra_arrays`) and,
online, for every finished episode (`episode_extra_values`); until its episode finishes an
online row holds `PENDING[name]`.

Known fields:
- `mc_returns`: the discounted Monte-Carlo return-to-go of the transition under the behaviour
  that collected it (Cal-QL's calibration bound), on the rewards the algorithm trains on (after
  the normaliser's reward scale) and with the algorithm's `discount`. Episodes cut by a time
  limit count their unobserved tail as 0, as Cal-QL's reference code does (see
  `offrl.data.returns`). A pending online row holds -inf, which `max(Q, bound)` leaves as Q.
- `next_actions`: the dataset's action at s' (ReBRAC's critic penalty), scaled to [-1, 1] like
  `actions`. The last row of an episode has no next action in the data; it repeats its own (the
  reference code, tinkoff-ai/ReBRAC, shifts the whole action array by one, so its last row takes
  the next episode's first action instead). Online rows also carry their own action: the engine
  writes a row before the next action exists, and ReBRAC's fine-tuning (Tarasov et al. 2023)
  decays the critic penalty online anyway.
- `costs`: the dataset's per-step constraint cost (DSRL's `costs`), unscaled (safe RL's cost
  critics, BCQ-Lag). A dataset without costs is refused; online rows carry the env's
  `info["cost"]` (offrl/train/online.py `step_envs`), and an env that reports none is refused.
- `initial_state_weights`: 1 / p on the first row of each episode and 0 elsewhere, with p the
  fraction of rows that start an episode, so the mean of `initial_state_weights * f(s)` over a
  uniform batch estimates the mean of f over the data's initial states (COptiDICE's (1 - γ) E[ν(s0)]
  term; OSRL's `is_init / init_state_propotion`). Offline only: a growing replay buffer has no
  fixed p, so fine-tuning an algorithm that declares it is refused before its run starts
  (`check_online_fields`).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from offrl.data.dataset import Dataset
from offrl.data.returns import returns_to_go
from offrl.data.transforms import Normalizer
from offrl.errors import ConfigError

KNOWN_FIELDS = ("mc_returns", "next_actions", "costs", "initial_state_weights")
PENDING = {"mc_returns": -np.inf}  # fields written when their episode ends (episode_extra_values)
OFFLINE_ONLY = ("initial_state_weights",)  # defined for a fixed dataset only


def online_row_values(name: str, transitions: dict[str, np.ndarray]) -> np.ndarray:
    """Field `name` for online rows as they are inserted (pending until their episode ends, or final)."""
    if name in PENDING:
        return np.full(len(transitions["rewards"]), PENDING[name], np.float32)
    if name == "next_actions":
        return np.asarray(transitions["actions"], np.float32)
    if name == "costs":  # step_envs records them where the env reports info["cost"]
        if "costs" not in transitions:
            raise ConfigError("The environment reports no per-step cost (info['cost']); expected a constrained env "
                              "for an algorithm that declares EXTRA_FIELDS ('costs',).")
        return np.asarray(transitions["costs"], np.float32)
    if name == "initial_state_weights":
        raise ConfigError("initial_state_weights exist for a fixed dataset only; expected offline training for an "
                          "algorithm that declares EXTRA_FIELDS ('initial_state_weights',).")
    raise ConfigError(f"Unknown extra field {name!r}; expected one of {list(KNOWN_FIELDS)}.")


def declared_fields(algo: ModuleType, algo_config: Any = None) -> tuple[str, ...]:
    """The algorithm's EXTRA_FIELDS, or what its `extra_fields(config)` hook asks for under `algo_config`
    (a field one setting needs, e.g. BCQ-Lag's initial_state_weights, need not bind the others)."""
    hook = getattr(algo, "extra_fields", None)
    fields = tuple(hook(algo_config) if hook is not None and algo_config is not None else getattr(algo, "EXTRA_FIELDS", ()))
    unknown = [name for name in fields if name not in KNOWN_FIELDS]
    if unknown:
        raise ConfigError(
            f"Algorithm {algo.NAME!r} declares EXTRA_FIELDS {unknown}; expected names from {list(KNOWN_FIELDS)}."
        )
    return fields


def check_online_fields(algo: ModuleType, algo_config: Any = None) -> None:
    """Refuse online training of an algorithm that declares an offline-only field."""
    offline_only = [name for name in declared_fields(algo, algo_config) if name in OFFLINE_ONLY]
    if offline_only:
        raise ConfigError(f"Algorithm {algo.NAME!r} trains on {offline_only[0]}, defined for a fixed dataset only; "
                          "expected offline training (`offrl train`), not online fine-tuning.")


def offline_extra_arrays(algo: ModuleType, algo_config: Any, dataset: Dataset, normalizer: Normalizer) -> dict[str, np.ndarray]:
    """The declared extra fields for every transition of `dataset` (float32 arrays)."""
    arrays = {}
    for name in declared_fields(algo, algo_config):
        if name == "mc_returns":
            arrays[name] = returns_to_go(normalizer.transform_rewards(dataset.rewards), dataset.episode_starts,
                                         dataset.terminals, algo_config.discount)
        elif name == "next_actions":
            actions = np.clip(normalizer.scale_actions(dataset.actions), -1.0, 1.0).astype(np.float32)
            following = np.concatenate([actions[1:], actions[-1:]])
            last = np.zeros(len(actions), bool)
            last[np.asarray(dataset.episode_starts[1:], np.int64) - 1] = True
            last[-1] = True
            arrays[name] = np.where(last[:, None], actions, following)
        elif name == "costs":
            if dataset.costs is None:
                raise ConfigError(f"{dataset.where} has no per-step costs; expected a dataset with a 'costs' field "
                                  f"(DSRL layout) for {algo.NAME}.")
            arrays[name] = dataset.costs.astype(np.float32)
        elif name == "initial_state_weights":
            first = np.zeros(dataset.num_transitions, np.float32)
            first[dataset.episode_starts] = 1.0
            arrays[name] = first * np.float32(dataset.num_transitions / dataset.num_episodes)
    return arrays


def episode_extra_values(name: str, scaled_rewards: np.ndarray, terminal: bool, algo_config: Any) -> np.ndarray:
    """Field `name` for the rows of one finished online episode (rewards already scaled)."""
    if name == "mc_returns":
        terminals = np.zeros(len(scaled_rewards), bool)
        terminals[-1] = terminal
        return returns_to_go(scaled_rewards, np.zeros(1, np.int64), terminals, algo_config.discount)
    raise ConfigError(f"Unknown extra field {name!r}; expected one of {list(KNOWN_FIELDS)}.")
