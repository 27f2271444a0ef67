"""Gymnasium environments by id, with errors that say what was expected."""

from __future__ import annotations

import contextlib
import os
import sys

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


@contextlib.contextmanager
def _quiet_native_stderr():
    """MuJoCo's model compiler prints deprecation notes for Gymnasium's own XML files (e.g.
    HalfCheetah's 'settotalmass') straight to file descriptor 2, once per env, and appends them
    to MUJOCO_LOG.TXT in the working directory; silence both while an env is built (MuJoCo's
    warning handler is swapped for one that drops them). Python exceptions still propagate."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        import mujoco
    except ImportError:  # a non-MuJoCo env without the mujoco package
        mujoco = None
    previous_handler = mujoco.get_mju_user_warning() if mujoco else None
    try:
        os.dup2(devnull, 2)
        if mujoco:
            mujoco.set_mju_user_warning(lambda message: None)
        yield
    finally:
        if mujoco:
            mujoco.set_mju_user_warning(previous_handler)
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def make_env(env_id: str) -> gym.Env:
    check_env_id(env_id)
    with _quiet_native_stderr():
        return gym.make(env_id)


def make_vector_env(env_id: str, num_envs: int) -> gym.vector.VectorEnv:
    """Synchronous vector env with same-step autoreset: a finished sub-env's true final
    observation is in `infos["final_obs"]` and the returned observation already starts the next
    episode."""
    check_env_id(env_id)
    with _quiet_native_stderr():
        return gym.make_vec(
            env_id,
            num_envs=num_envs,
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
        )


def action_bounds(env_id: str) -> tuple[np.ndarray, np.ndarray]:
    """The Box action bounds of `env_id`; refuses discrete or unbounded action spaces."""
    env = make_env(env_id)
    try:
        space = env.action_space
        if not isinstance(space, gym.spaces.Box):
            raise ConfigError(f"Environment {env_id!r} has action space {space}; expected a continuous Box space.")
        if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise ConfigError(f"Environment {env_id!r} has an unbounded action space; expected finite bounds.")
        return space.low.astype(np.float32), space.high.astype(np.float32)
    finally:
        env.close()
