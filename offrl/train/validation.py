"""Losses on held-out validation episodes, logged beside the training metrics.

The algorithm's own `update` is pure, so calling it on a validation batch and keeping only its
metrics (the new state is dropped) gives every algorithm's losses on data it never trained on,
without the engine knowing the algorithm: the TD error of its critic (`bellman_loss`, else
`critic_loss`) is what `offrl select --by validation-td` ranks by. Written to
`validation.jsonl` at every evaluation step.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import jax
import numpy as np

from offrl.data.dataset import Dataset
from offrl.data.transforms import Normalizer, training_arrays
from offrl.data.validation_split import split_episodes
from offrl.train.extra_fields import offline_extra_arrays
from offrl.train.fused import gather_batch
from offrl.types import Batch

MAX_VALIDATION_TRANSITIONS = 10_000  # one fixed batch: enough for a stable mean, cheap beside a chunk of updates
TD_METRICS = ("bellman_loss", "critic_loss")  # the TD part first (CQL/Cal-QL's critic_loss adds the penalty)


class ValidationProbe:
    """`metrics(state)`: the algorithm's update metrics on the fixed validation batch."""

    def __init__(self, algo: ModuleType, algo_config: Any, validation: Dataset, normalizer: Normalizer):
        arrays = training_arrays(validation, normalizer)
        arrays.update(offline_extra_arrays(algo, algo_config, validation, normalizer))
        count = len(arrays["rewards"])
        if count > MAX_VALIDATION_TRANSITIONS:
            rows = np.sort(np.random.default_rng(0).choice(count, MAX_VALIDATION_TRANSITIONS, replace=False))
            arrays = {name: values[rows] for name, values in arrays.items()}
        self.batch = Batch(**gather_batch(jax.device_put(arrays), np.arange(len(arrays["rewards"]))))
        self.num_transitions = len(arrays["rewards"])
        self._metrics = jax.jit(lambda state, batch: algo.update(state, batch, algo_config)[1])

    def metrics(self, state: Any) -> dict[str, float]:
        values = jax.device_get(self._metrics(state, self.batch))
        return {f"validation_{name}": float(np.mean(value)) for name, value in values.items()}


def validation_probe(algo: ModuleType, algo_config: Any, dataset: Dataset, fraction: float, seed: int,
                     normalizer: Normalizer) -> ValidationProbe | None:
    """A probe on the held-out episodes, or None (no validation split, or an algorithm that lays
    out its own batches, such as the Decision Transformer's windows)."""
    if fraction <= 0 or getattr(algo, "sample", None) is not None:
        return None
    _, validation = split_episodes(dataset, fraction, seed)
    return ValidationProbe(algo, algo_config, validation, normalizer)


def validation_td(record: dict[str, Any]) -> float | None:
    """The TD error in a validation.jsonl record (None if the algorithm has no critic)."""
    for name in TD_METRICS:
        value = record.get(f"validation_{name}")
        if value is not None and np.isfinite(value):
            return float(value)
    return None
