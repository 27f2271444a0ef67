"""The fused update: K algorithm updates, each on a batch gathered on device, in one program.

Offline and online engines both call `make_fused_update`; the algorithm only supplies its pure
`update`. Sampling is a gather by random indices inside the compiled step, so no data crosses
from host to device per update.

An algorithm that trains on something other than uniformly drawn transitions (windows of
consecutive steps, for a sequence model) defines `sample(data, key, config) -> batch`, and
`training_data(dataset, normalizer, config)` to lay `data` out (used by the offline engine's
`prepare`); the batch it returns is what its `update` receives.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Callable

import jax
import jax.numpy as jnp

from offrl.errors import ConfigError
from offrl.train.model_rollouts import model_based_update, uses_model_rollouts
from offrl.types import Batch

BATCH_FIELDS = ("observations", "actions", "rewards", "next_observations", "dones")
OPTIONAL_BATCH_FIELDS = ("mc_returns", "next_actions", "costs", "initial_state_weights")  # gathered when `data` holds them (offrl.train.extra_fields)


def gather_batch(data: dict[str, jax.Array], index: jax.Array) -> dict[str, jax.Array]:
    """Rows `index` of every Batch field in `data` (the five always, optional ones when present)."""
    names = BATCH_FIELDS + tuple(name for name in OPTIONAL_BATCH_FIELDS if name in data)
    return {name: data[name][index] for name in names}


def sample_batch(data: dict[str, jax.Array], key: jax.Array, batch_size: int, size: jax.Array | int | None = None) -> Batch:
    """Uniformly sample `batch_size` transitions from the first `size` rows of `data`.

    `size` may be a traced scalar (a replay buffer that is still filling up). Data holding a
    `sampling_cdf` (`--sampler`, offrl/train/samplers.py) is drawn by inverse CDF instead.
    """
    upper = data["rewards"].shape[0] if size is None else size
    if "sampling_cdf" in data and size is None:
        uniform = jax.random.uniform(key, (batch_size,))
        index = jnp.minimum(jnp.searchsorted(data["sampling_cdf"], uniform, side="right"), upper - 1)
        return Batch(**gather_batch(data, index))
    index = jax.random.randint(key, (batch_size,), 0, upper)
    return Batch(**gather_batch(data, index))


def make_fused_update(algo: ModuleType, config: Any, num_updates: int) -> Callable:
    """Return `fused(state, data, key, size) -> (state, metrics)`, not yet jitted.

    Metrics are averaged over the K updates with nanmean: an algorithm reports NaN for a
    quantity it did not compute on a step (e.g. TD3's delayed actor update).
    """

    custom_sample = getattr(algo, "sample", None)

    def plain_update(state, key, data, size):
        if custom_sample is None:
            batch = sample_batch(data, key, config.batch_size, size)
        else:
            batch = custom_sample(data, key, config)
        return algo.update(state, batch, config)

    # Model-based algorithms: rollouts into the state's model buffer, mixed batches (offrl/train/model_rollouts.py).
    one_update = model_based_update(algo, config, sample_batch) if uses_model_rollouts(algo) else plain_update

    def fused(state, data, key, size=None):
        if custom_sample is not None and size is not None:
            raise ConfigError(
                f"Algorithm '{algo.NAME}' samples its own batches from a fixed dataset; expected offline "
                "training (it cannot sample a growing replay buffer)."
            )
        keys = jax.random.split(key, num_updates)
        state, metrics = jax.lax.scan(lambda s, k: one_update(s, k, data, size), state, keys)
        return state, jax.tree.map(jnp.nanmean, metrics)

    return fused
