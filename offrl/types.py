"""Types shared by every room: what an algorithm sees of a dataset."""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
from flax import struct


@dataclass(frozen=True)
class Spec:
    """The spaces an algorithm is built from.

    Actions are always presented to algorithms scaled to [-1, 1]; the engine maps them back
    to the environment's bounds, so an algorithm never needs the true bounds.
    """

    observation_dim: int
    action_dim: int


@struct.dataclass
class Batch:
    """A batch of transitions as algorithms receive it (already normalised by the engine).

    `dones` is 1.0 only where the MDP terminated (no bootstrap); time-limit truncations are 0.0.
    Optional fields are present only for an algorithm that declares them in its module's
    `EXTRA_FIELDS` (offrl.train.extra_fields); otherwise they are None.
    """

    observations: jnp.ndarray
    actions: jnp.ndarray
    rewards: jnp.ndarray
    next_observations: jnp.ndarray
    dones: jnp.ndarray
    mc_returns: jnp.ndarray | None = None  # Monte-Carlo return-to-go (Cal-QL's calibration bound)
    next_actions: jnp.ndarray | None = None  # the dataset's action at s' (ReBRAC's critic penalty)
    costs: jnp.ndarray | None = None  # the constraint cost of the transition (safe RL: BCQ-Lag's cost critic)
    initial_state_weights: jnp.ndarray | None = None  # 1/p on episodes' first rows, else 0 (COptiDICE's E[ν(s0)])
