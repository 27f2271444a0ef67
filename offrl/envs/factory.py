"""Gymnasium environments by id, with errors that say what was expected."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import re
import sys
from typing import Any

import gymnasium as gym
import numpy as np

from offrl.errors import ConfigError


# Env ids of the suites gymnasium-robotics registers (D4RL's AntMaze, PointMaze, Adroit, Kitchen ports).
_ROBOTICS_PREFIXES = ("AntMaze", "PointMaze", "Adroit", "FrankaKitchen")
_OVERRIDE_KEYS = ("kwargs", "max_episode_steps")


def split_env_id(env_id: str) -> tuple[str, dict[str, Any]]:
    """'Hopper-v5' -> ('Hopper-v5', {}); 'AntMaze_UMaze-v5 {"kwargs": {...}, "max_episode_steps": 700}'
    -> the registered id and the overrides a dataset's evaluation env needs (see `env_id_with_overrides`)."""
    name, _, rest = env_id.partition(" ")
    if not rest.strip():
        return env_id.strip(), {}
    try:
        overrides = json.loads(rest)
    except ValueError:
        overrides = None
    limit = overrides.get("max_episode_steps", 1) if isinstance(overrides, dict) else None
    if (not isinstance(overrides, dict) or not set(overrides) <= set(_OVERRIDE_KEYS) or not isinstance(overrides.get("kwargs", {}), dict)
            or isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"Environment id {env_id!r} has text after the id that is not a JSON object of "
                          f"{' / '.join(_OVERRIDE_KEYS)} (a positive whole number of steps); expected 'ID' or 'ID {{\"kwargs\": {{...}}}}'.")
    return name, overrides


def env_id_with_overrides(spec_json: str | None) -> str | None:
    """The offrl env id for a Gymnasium EnvSpec in JSON (as Minari stores `env_spec` / `eval_env_spec`):
    the plain id when the spec is the registered one, else the id followed by the JSON of the
    constructor kwargs and episode limit that differ (e.g. D4RL AntMaze's fixed goal and reset cells),
    so every process that evaluates builds the same env from the id alone."""
    try:
        spec = json.loads(spec_json) if isinstance(spec_json, str) else None
        env_id = spec["id"] if isinstance(spec, dict) else None
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(env_id, str):
        return None
    try:
        registered = _registered_spec(env_id)
        default_kwargs, default_limit = registered.kwargs, registered.max_episode_steps
    except ConfigError:  # not installed here: keep everything the spec states
        default_kwargs, default_limit = {}, None
    kwargs = {key: value for key, value in (spec.get("kwargs") or {}).items()
              if key != "render_mode" and default_kwargs.get(key, object()) != value}
    overrides: dict[str, Any] = {"kwargs": kwargs} if kwargs else {}
    if spec.get("max_episode_steps") is not None and spec["max_episode_steps"] != default_limit:
        overrides["max_episode_steps"] = int(spec["max_episode_steps"])
    return f"{env_id} {json.dumps(overrides, sort_keys=True, separators=(',', ':'))}" if overrides else env_id


def _registered_spec(name: str) -> gym.envs.registration.EnvSpec:
    try:
        return gym.spec(name)
    except Exception as error:  # gymnasium raises several error types for unknown ids
        if name.startswith(_ROBOTICS_PREFIXES) and importlib.util.find_spec("gymnasium_robotics") is not None:
            import gymnasium_robotics

            gym.register_envs(gymnasium_robotics)
            with contextlib.suppress(Exception):
                return gym.spec(name)
        hint = (" (gymnasium-robotics registers it: pip install 'offrl[robotics]')"
                if name.startswith(_ROBOTICS_PREFIXES) and importlib.util.find_spec("gymnasium_robotics") is None else "")
        suggestion = re.search(r"Did you mean: `([^`]+)`", str(error))
        close = f" (did you mean {suggestion.group(1)!r}?)" if suggestion else ""
        raise ConfigError(
            f"Unknown Gymnasium environment id {name!r}{hint}{close}; expected a registered id such as 'Hopper-v5'."
        ) from None


def check_env_id(env_id: str) -> gym.envs.registration.EnvSpec:
    """The EnvSpec `env_id` names, with the overrides it carries applied."""
    name, overrides = split_env_id(env_id)
    spec = _registered_spec(name)
    if overrides:
        spec = dataclasses.replace(spec, kwargs={**spec.kwargs, **overrides.get("kwargs", {})},
                                   max_episode_steps=overrides.get("max_episode_steps", spec.max_episode_steps))
    return spec


def flatten_dict_observations(env: gym.Env) -> gym.Env:
    """A goal-conditioned env's Dict observation as one vector, in the order offrl's Minari reader
    flattens the dataset's (gymnasium's `flatten`: the Dict's keys in order); other envs unchanged."""
    if isinstance(env.observation_space, gym.spaces.Dict):
        return gym.wrappers.FlattenObservation(env)
    return env


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


@contextlib.contextmanager
def _refused_arguments(env_id: str):
    """An override the env's constructor does not take, as one sentence."""
    try:
        yield
    except TypeError as error:
        raise ConfigError(f"Environment id {env_id!r} passes arguments the env does not take "
                          f"({str(error).splitlines()[0].split(' was raised from')[0].rstrip('.')}); expected only its constructor's keyword arguments.") from None


def make_env(env_id: str) -> gym.Env:
    spec = check_env_id(env_id)
    with _quiet_native_stderr(), _refused_arguments(env_id):
        return flatten_dict_observations(gym.make(spec))


def make_vector_env(env_id: str, num_envs: int) -> gym.vector.VectorEnv:
    """Synchronous vector env with same-step autoreset: a finished sub-env's true final
    observation is in `infos["final_obs"]` and the returned observation already starts the next
    episode."""
    spec = check_env_id(env_id)
    with _quiet_native_stderr(), _refused_arguments(env_id):
        return gym.make_vec(
            spec,
            num_envs=num_envs,
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP},
            wrappers=[flatten_dict_observations],
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
