"""Termination functions for model rollouts: when a predicted next observation ends the episode.

The hand-written functions the model-based references use (MOPO's static_fns, OfflineRL-Kit
offlinerlkit/utils/termination_fns.py), matched to Gymnasium's v4/v5 health checks. Each is a
box on the next observation: the episode ends when any entry leaves [low, high]. Envs whose
episodes only end by time limit (HalfCheetah, Swimmer, Pendulum) never terminate. Other envs use
`--termination learned` (the dynamics ensemble's terminal head) or `--termination never`.
"""

from __future__ import annotations

import numpy as np

from offrl.envs.factory import split_env_id
from offrl.errors import ConfigError

INF = np.inf

# env name (before "-v") -> {observation index: (low, high)}; a "rest" key bounds every index
# from 1 on (Hopper's |state[1:]| < 100).
_HEALTHY_BOXES: dict[str, dict] = {
    "Hopper": {0: (0.7, INF), 1: (-0.2, 0.2), "rest": (-100.0, 100.0)},  # termination_fns.py termination_fn_hopper
    "Walker2d": {0: (0.8, 2.0), 1: (-1.0, 1.0)},  # termination_fn_walker2d
    "Ant": {0: (0.2, 1.0)},  # termination_fn_ant (z, with Gymnasium's default exclude_current_positions)
    "InvertedPendulum": {1: (-0.2, 0.2)},  # termination_fn_inverted_pendulum
    "HalfCheetah": {},  # termination_fn_halfcheetah: never
    "Swimmer": {},
    "Pendulum": {},  # Gymnasium Pendulum-v1 only truncates
}


def env_name(env_id: str) -> str:
    return split_env_id(env_id)[0].split("/")[-1].split("-v")[0]


def _changes_health_check(env_id: str) -> bool:
    """Whether the id's constructor overrides move the observation entries the boxes read or change
    when the env terminates (the boxes are the default envs')."""
    kwargs = split_env_id(env_id)[1].get("kwargs", {})
    return any(key in ("exclude_current_positions_from_observation", "terminate_when_unhealthy") or key.startswith("healthy_")
               for key in kwargs)


def has_termination_function(env_id: str | None) -> bool:
    return env_id is not None and env_name(env_id) in _HEALTHY_BOXES and not _changes_health_check(env_id)


def termination_box(env_id: str | None, observation_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(low, high), each (observation_dim,): a next observation outside them is terminal."""
    if not has_termination_function(env_id):
        raise ConfigError(
            f"Env {env_id!r} has no termination function for model rollouts; expected one of "
            f"{', '.join(sorted(_HEALTHY_BOXES))} (or a dataset with an env id that names one), or --termination learned "
            "(a terminal head trained on the dataset's terminals) or --termination never (episodes end only by time limit)."
        )
    low, high = np.full(observation_dim, -INF), np.full(observation_dim, INF)
    for index, (lo, hi) in _HEALTHY_BOXES[env_name(env_id)].items():
        rows = slice(1, None) if index == "rest" else slice(index, index + 1)
        low[rows], high[rows] = np.maximum(low[rows], lo), np.minimum(high[rows], hi)
    return low.astype(np.float32), high.astype(np.float32)
