"""Data for the safe offline RL tests (tests/test_safe.py), recorded on offrl/PendulumTorqueCost-v0:
Pendulum-v1 where a step costs 1 when |torque| > 1 (offrl/envs/torque_cost.py).

`safe_and_unsafe_pendulum`: 30 episodes of the scripted swing-up controller (tests/scripted.py)
with N(0, 0.1) torque noise, interleaved: two of every three use the full torque range (about
-143, cost about 23 per episode: unsafe at a target cost of 5), the third is capped at |u| <= 0.8
(about -316, cost 0: safe). Imitating all of it (BC-All) pumps with more than the limit; the safe
episodes alone (BC-Safe) swing up within it.
"""

from __future__ import annotations

import numpy as np

from offrl.data.collect import collect_episodes
from dataset_helpers import interleaved_episodes
from offrl.data.dataset import Dataset
from offrl.envs.torque_cost import PENDULUM_TORQUE_COST_ID
from scripted import swing_up

SAFE_EVERY = 3  # episodes 0, 3, 6, ... are the capped (safe) controller's
SAFE_TORQUE = 0.8
TARGET_COST = 5.0


def capped_controller(cap: float, noise: float = 0.1):
    def policy(observations: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.clip(swing_up(observations) + rng.normal(0.0, noise, (len(observations), 1)), -cap, cap)

    return policy


def safe_and_unsafe_pendulum(references: tuple[float, float], num_episodes: int = 30) -> Dataset:
    safe_count = num_episodes // SAFE_EVERY
    safe = collect_episodes(PENDULUM_TORQUE_COST_ID, capped_controller(SAFE_TORQUE), safe_count, seed=20)
    unsafe = collect_episodes(PENDULUM_TORQUE_COST_ID, capped_controller(2.0), num_episodes - safe_count, seed=21)
    return interleaved_episodes(safe, unsafe, SAFE_EVERY, "pendulum-torque-cost-safe-unsafe-v0",
                                {"maker": "tests/safe_learning_data.py safe_and_unsafe_pendulum", "safe_every": SAFE_EVERY},
                                references)
