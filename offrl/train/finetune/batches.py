"""Batches of the fine-tuning engine: offline and online rows mixed inside the compiled step.

`mixed` mode draws round(offline_ratio * B) uniform offline rows followed by B minus that many
uniform rows among the online buffer's filled part (RLPD's symmetric sampling at ratio 0.5, Ball
et al. 2023); with no offline rows (WSRL, or ratio 0) batches are online rows only."""

from __future__ import annotations

from types import ModuleType
from typing import Callable

import jax
import jax.numpy as jnp

from offrl.train.fused import gather_batch
from offrl.types import Batch


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
