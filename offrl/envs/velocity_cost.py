"""Safety-Gymnasium's velocity tasks, rebuilt as Gymnasium 1.x wrappers over MuJoCo v5 locomotion.

Safety-Gymnasium (PKU-Alignment/safety-gymnasium, `safety_gymnasium/tasks/safe_velocity/`) pins
gymnasium 0.28 and mujoco 2.3, so it cannot install beside offrl. Its velocity tasks are the
Gymnasium MuJoCo robots with one change: a step costs 1 when the robot moves faster than a
per-robot threshold (forward velocity; planar speed for Ant), else 0. Rewards, observations,
terminations and time limits stay the robot's own. The step's cost is returned in
`info["cost"]`, the key DSRL and OSRL read (reset reports cost 0.0, so that Minari's
DataCollector, which needs the same info keys at reset and step, records it).

The velocity is the one the v5 env reports in `info` (`x_velocity`, and `y_velocity` for Ant),
computed, as Safety-Gymnasium does, as the displacement of the root (Ant: torso) over one
control step `dt`. Differences from the originals: offrl wraps the v5 robots (Safety-Gymnasium
subclassed v4), so v5's own changes (e.g. Hopper/Walker2d health checks, Ant's contact forces
defaults) carry over; Humanoid is not rebuilt (its velocity is the centre of mass's).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

COST_INFO_KEY = "cost"

# Per-robot thresholds of the v1 tasks (the ones DSRL's Offline*VelocityGymnasium-v1 datasets use),
# from safety_gymnasium/tasks/safe_velocity/safety_<robot>_velocity_v1.py (`self._velocity_threshold`).
VELOCITY_THRESHOLDS = {
    "Hopper": 0.7402,  # safety_hopper_velocity_v1.py
    "HalfCheetah": 3.2096,  # safety_half_cheetah_velocity_v1.py
    "Walker2d": 2.3415,  # safety_walker2d_velocity_v1.py
    "Ant": 2.6222,  # safety_ant_velocity_v1.py (planar speed sqrt(vx^2 + vy^2), safety_ant_velocity_v0.py)
    "Swimmer": 0.2282,  # safety_swimmer_velocity_v1.py
}
PLANAR_SPEED = ("Ant",)  # robots whose cost uses the planar speed, not the forward velocity
BASE_ENV = {robot: f"{robot}-v5" for robot in VELOCITY_THRESHOLDS}


def velocity_env_id(robot: str) -> str:
    """offrl's id for Safety-Gymnasium's `Safety<robot>Velocity-v1`."""
    return f"offrl/Safety{robot}Velocity-v1"


class VelocityCost(gym.Wrapper):
    """Adds `info["cost"]`: 1.0 when the step's velocity exceeds `threshold`, else 0.0."""

    def __init__(self, env: gym.Env, threshold: float, planar: bool = False):
        super().__init__(env)
        self.threshold = float(threshold)
        self.planar = planar

    def velocity(self, info: dict[str, Any]) -> float:
        if self.planar:
            return float(np.hypot(info["x_velocity"], info["y_velocity"]))
        return float(info["x_velocity"])

    def reset(self, **kwargs):
        observation, info = self.env.reset(**kwargs)
        return observation, {**info, COST_INFO_KEY: 0.0}

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        cost = float(self.velocity(info) > self.threshold)
        return observation, reward, terminated, truncated, {**info, COST_INFO_KEY: cost}


def make_velocity_env(robot: str, **kwargs: Any) -> gym.Env:
    """The bare v5 robot (its registered entry point, without wrappers) with the velocity cost;
    `gym.make` adds the time limit and checkers on top, from this env's registration."""
    creator = gym.envs.registration.load_env_creator(gym.spec(BASE_ENV[robot]).entry_point)
    return VelocityCost(creator(**kwargs), VELOCITY_THRESHOLDS[robot], planar=robot in PLANAR_SPEED)


def register_velocity_envs() -> None:
    for robot, base in BASE_ENV.items():
        env_id = velocity_env_id(robot)
        if env_id in gym.registry:
            continue
        spec = gym.spec(base)
        # A string entry point: Minari stores the env spec as JSON, which a callable cannot be.
        gym.register(id=env_id, entry_point=f"{__name__}:make_velocity_env", kwargs={"robot": robot, **spec.kwargs},
                     max_episode_steps=spec.max_episode_steps)
