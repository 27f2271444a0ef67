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

from offrl.data.collect import collect_episodes, episodes_to_dataset
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
    safe_episodes = [safe.episode(i) for i in range(safe.num_episodes)]
    unsafe_episodes = [unsafe.episode(i) for i in range(unsafe.num_episodes)]
    episodes = [safe_episodes.pop(0) if i % SAFE_EVERY == 0 else unsafe_episodes.pop(0) for i in range(num_episodes)]
    metadata = type(safe.metadata)(**{**vars(safe.metadata)})
    metadata.name = "pendulum-torque-cost-safe-unsafe-v0"
    metadata.provenance = {"maker": "tests/safe_learning_data.py safe_and_unsafe_pendulum", "safe_every": SAFE_EVERY}
    metadata.ref_min_score, metadata.ref_max_score = references
    return episodes_to_dataset(episodes, metadata)
