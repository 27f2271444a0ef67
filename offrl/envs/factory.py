"""Gymnasium environments by id, with errors that say what was expected."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from offrl.errors import ConfigError


def check_env_id(env_id: str) -> gym.envs.registration.EnvSpec:
    try:
        return gym.spec(env_id)
    except Exception as error:  # gymnasium raises several error types for unknown ids
        raise ConfigError(
            f"Unknown Gymnasium environment id {env_id!r} ({error}); expected a registered id such as 'Hopper-v5'."
        ) from None


def make_vector_env(env_id: str, num_envs: int) -> gym.vector.VectorEnv:
    """Synchronous vector env with same-step autoreset: a finished sub-env's true final
    observation is in `infos["final_obs"]` and the returned observation already starts the next
    episode."""
    check_env_id(env_id)
    return gym.make_vec(
        env_id,
        num_envs=num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
    )


def action_bounds(env_id: str) -> tuple[np.ndarray, np.ndarray]:
    """The Box action bounds of `env_id`; refuses discrete or unbounded action spaces."""
    check_env_id(env_id)
    env = gym.make(env_id)
    try:
        space = env.action_space
        if not isinstance(space, gym.spaces.Box):
            raise ConfigError(f"Environment {env_id!r} has action space {space}; expected a continuous Box space.")
        if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise ConfigError(f"Environment {env_id!r} has an unbounded action space; expected finite bounds.")
        return space.low.astype(np.float32), space.high.astype(np.float32)
    finally:
        env.close()
