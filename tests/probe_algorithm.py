"""A probe algorithm for engine tests: no learning, it only reports what its batches contain
(offline rows carry MARKER in their last observation coordinate) and counts its updates. Lives
outside the test modules so a child process (tests/test_finetune.py's SIGKILL test) can import it."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import struct

MARKER = 100.0  # offline observations carry this in their last coordinate; no env observation does


@dataclass(frozen=True)
class ProbeConfig:
    batch_size: int = 20
    discount: float = 0.99
    normalize_observations: bool = False
    normalize_rewards: bool = False


@struct.dataclass
class ProbeState:
    updates: jax.Array


class probe:  # noqa: N801 - stands in for an algorithm module
    NAME = "probe"
    DESCRIPTION = PAPER = "a probe of the engine"
    Config = ProbeConfig

    @staticmethod
    def init(key, spec, config):
        return ProbeState(updates=jnp.zeros((), jnp.int32))

    @staticmethod
    def update(state, batch, config):
        offline = (batch.observations[:, -1] > MARKER / 2).sum().astype(jnp.float32)
        return state.replace(updates=state.updates + 1), {
            "offline_rows": offline, "online_rows": batch.observations.shape[0] - offline,
            "offline_first": jnp.all(jnp.diff((batch.observations[:, -1] > MARKER / 2).astype(jnp.int32)) <= 0).astype(jnp.float32),
        }

    @staticmethod
    def act(state, observations, key, deterministic=True):
        if deterministic:
            return jnp.zeros((observations.shape[0], 1))
        return jax.random.uniform(key, (observations.shape[0], 1), minval=-1.0, maxval=1.0)
