"""A constrained task whose cost is paid all along an episode, not at its start: a 1-D runner.

State: the speed v (one number). Action a in [-1, 1] (throttle): v' = 0.8 v + 0.4 a, so a held
throttle a settles at speed 2a. Reward v' (distance covered), cost 1 on every step with v' above
SPEED_LIMIT (1.0). Episodes start at rest and last 100 steps.

Why it exists beside the torque-cost Pendulum (tests/safe_learning_data.py): there the cost is
paid during the swing-up at an episode's start, so a cost critic averaged over the data's states
(mostly balanced, cost-free ones) stays under its per-step limit while the episode cost is above
κ, and BCQ-Lag's multiplier, driven by that average, never rises (docs/safe-rl.md). Here a state
keeps paying while it stays fast, as Safety-Gymnasium's velocity tasks do, so the average tells.

Data (`safe_and_unsafe_runs`): two of every three episodes from full throttle (a = 1 + noise:
speed about 2, about 98 cost and about 190 return per episode, unsafe), the third from a capped
throttle (a = 0.4 + noise: speed about 0.8, cost about 0, return about 78). Imitating all of it
runs at about 1.6 (unsafe); the best safe policy holds the speed just under 1 (return about 98).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from offrl.data.collect import collect_episodes
from dataset_helpers import interleaved_episodes
from offrl.data.dataset import Dataset

SPEED_LIMIT_ID = "OffrlTestSpeedLimit-v0"
SPEED_LIMIT = 1.0
EPISODE_STEPS = 100
FULL_THROTTLE, CAPPED_THROTTLE = 1.0, 0.4
SAFE_EVERY = 3  # episodes 0, 3, 6, ... are the capped throttle's
TARGET_COST = 10.0  # per 100-step episode


class SpeedLimitRunner(gym.Env):
    def __init__(self):
        self.observation_space = gym.spaces.Box(-10.0, 10.0, (1,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.speed = 0.0
        return np.array([self.speed], np.float32), {"cost": 0.0}

    def step(self, action):
        throttle = float(np.clip(np.asarray(action, np.float64).reshape(-1)[0], -1.0, 1.0))
        self.speed = 0.8 * self.speed + 0.4 * throttle
        return (np.array([self.speed], np.float32), float(self.speed), False, False,
                {"cost": float(self.speed > SPEED_LIMIT)})


if SPEED_LIMIT_ID not in gym.registry:
    gym.register(SPEED_LIMIT_ID, entry_point="speed_limit:SpeedLimitRunner", max_episode_steps=EPISODE_STEPS)


def throttle(level: float, noise: float = 0.1):
    def policy(observations: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.clip(level + rng.normal(0.0, noise, (len(observations), 1)), -1.0, 1.0).astype(np.float32)

    return policy


def runner_references() -> tuple[float, float]:
    """(uniform random actions' return, full throttle's return): DSRL's R_min and R_max here."""
    random_return = collect_episodes(SPEED_LIMIT_ID, lambda obs, rng: rng.uniform(-1, 1, (len(obs), 1)), 10, seed=1).episode_returns()
    full_return = collect_episodes(SPEED_LIMIT_ID, throttle(FULL_THROTTLE), 10, seed=2).episode_returns()
    return float(random_return.mean()), float(full_return.mean())


def safe_and_unsafe_runs(num_episodes: int = 30) -> Dataset:
    safe_count = num_episodes // SAFE_EVERY
    safe = collect_episodes(SPEED_LIMIT_ID, throttle(CAPPED_THROTTLE), safe_count, seed=20)
    unsafe = collect_episodes(SPEED_LIMIT_ID, throttle(FULL_THROTTLE), num_episodes - safe_count, seed=21)
    return interleaved_episodes(safe, unsafe, SAFE_EVERY, "speed-limit-safe-unsafe-v0",
                                {"maker": "tests/speed_limit.py safe_and_unsafe_runs", "safe_every": SAFE_EVERY},
                                runner_references())


# ------------------------------------------------------------------ the ticketed runner (CPQ's task)
TICKET_ID = "OffrlTestSpeedTicket-v0"


class SpeedTicketRunner(SpeedLimitRunner):
    """The runner whose first step over the limit is irreversible: once over it, the episode is
    ticketed and pays cost 1 on every remaining step, however slowly it then runs (observation:
    speed and the ticket flag). A violation then costs the rest of the episode, as a crash or a
    broken part does, rather than one step."""

    def __init__(self):
        super().__init__()
        self.observation_space = gym.spaces.Box(-10.0, 10.0, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        _, info = super().reset(seed=seed, options=options)
        self.ticketed = False
        return np.array([self.speed, 0.0], np.float32), info

    def step(self, action):
        _, reward, terminated, truncated, info = super().step(action)
        self.ticketed = self.ticketed or info["cost"] > 0
        return (np.array([self.speed, float(self.ticketed)], np.float32), reward, terminated, truncated,
                {"cost": float(self.ticketed)})


if TICKET_ID not in gym.registry:
    gym.register(TICKET_ID, entry_point="speed_limit:SpeedTicketRunner", max_episode_steps=EPISODE_STEPS)


def ticket_references() -> tuple[float, float]:
    random_return = collect_episodes(TICKET_ID, lambda obs, rng: rng.uniform(-1, 1, (len(obs), 1)), 10, seed=1).episode_returns()
    full_return = collect_episodes(TICKET_ID, throttle(FULL_THROTTLE), 10, seed=2).episode_returns()
    return float(random_return.mean()), float(full_return.mean())


def ticketed_runs(num_episodes: int = 30, unsafe_throttle: float = FULL_THROTTLE) -> Dataset:
    safe_count = num_episodes // SAFE_EVERY
    safe = collect_episodes(TICKET_ID, throttle(CAPPED_THROTTLE), safe_count, seed=20)
    unsafe = collect_episodes(TICKET_ID, throttle(unsafe_throttle), num_episodes - safe_count, seed=21)
    return interleaved_episodes(safe, unsafe, SAFE_EVERY, "speed-ticket-safe-unsafe-v0",
                                {"maker": "tests/speed_limit.py ticketed_runs", "safe_every": SAFE_EVERY,
                                 "unsafe_throttle": unsafe_throttle}, ticket_references())
