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
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from offrl.data.dataset import Dataset
from offrl.data.returns import returns_to_go
from offrl.data.transforms import Normalizer
from offrl.errors import ConfigError

KNOWN_FIELDS = ("mc_returns",)
PENDING = {"mc_returns": -np.inf}


def declared_fields(algo: ModuleType) -> tuple[str, ...]:
    fields = tuple(getattr(algo, "EXTRA_FIELDS", ()))
    unknown = [name for name in fields if name not in KNOWN_FIELDS]
    if unknown:
        raise ConfigError(
            f"Algorithm {algo.NAME!r} declares EXTRA_FIELDS {unknown}; expected names from {list(KNOWN_FIELDS)}."
        )
    return fields


def offline_extra_arrays(algo: ModuleType, algo_config: Any, dataset: Dataset, normalizer: Normalizer) -> dict[str, np.ndarray]:
    """The declared extra fields for every transition of `dataset` (float32 arrays)."""
    arrays = {}
    for name in declared_fields(algo):
        if name == "mc_returns":
            arrays[name] = returns_to_go(dataset.rewards * normalizer.reward_scale, dataset.episode_starts,
                                         dataset.terminals, algo_config.discount)
    return arrays


def episode_extra_values(name: str, scaled_rewards: np.ndarray, terminal: bool, algo_config: Any) -> np.ndarray:
    """Field `name` for the rows of one finished online episode (rewards already scaled)."""
    if name == "mc_returns":
        terminals = np.zeros(len(scaled_rewards), bool)
        terminals[-1] = terminal
        return returns_to_go(scaled_rewards, np.zeros(1, np.int64), terminals, algo_config.discount)
    raise ConfigError(f"Unknown extra field {name!r}; expected one of {list(KNOWN_FIELDS)}.")
