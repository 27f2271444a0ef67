"""A small constrained task: Pendulum-v1 whose step costs 1 when the torque exceeds a limit.

Cheap enough for learning tests (200-step episodes, 3-D observations) and still a real reward-cost
trade-off: the swing-up controller that uses the full torque range (|u| <= 2) scores about -143
and pays a cost on about 23 steps per episode; the same controller capped at |u| <= 0.8 needs more
swings (about -316) and pays nothing; uniform random actions score about -1277 at a cost of about
100 (measured with tests/scripted.py, 5 episodes each). The cost is in `info["cost"]` as in the
velocity tasks (offrl/envs/velocity_cost.py); reset reports 0.0.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

PENDULUM_TORQUE_COST_ID = "offrl/PendulumTorqueCost-v0"
TORQUE_LIMIT = 1.0  # half of Pendulum-v1's maximum torque


class TorqueCost(gym.Wrapper):
    """Adds `info["cost"]`: 1.0 when any action component's magnitude exceeds `limit`."""

    def __init__(self, env: gym.Env, limit: float = TORQUE_LIMIT):
        super().__init__(env)
        self.limit = float(limit)

    def reset(self, **kwargs):
        observation, info = self.env.reset(**kwargs)
        return observation, {**info, "cost": 0.0}

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        cost = float(np.max(np.abs(np.asarray(action, np.float64))) > self.limit)
        return observation, reward, terminated, truncated, {**info, "cost": cost}


def make_pendulum_torque_cost(**kwargs) -> gym.Env:
    creator = gym.envs.registration.load_env_creator(gym.spec("Pendulum-v1").entry_point)
    return TorqueCost(creator(**kwargs))


def register_torque_cost_envs() -> None:
    if PENDULUM_TORQUE_COST_ID not in gym.registry:
        # A string entry point: Minari stores the env spec as JSON, which a callable cannot be.
        gym.register(id=PENDULUM_TORQUE_COST_ID, entry_point=f"{__name__}:make_pendulum_torque_cost",
                     max_episode_steps=gym.spec("Pendulum-v1").max_episode_steps)
