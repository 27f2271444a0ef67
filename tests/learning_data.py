"""Datasets for the learning tests (tests/test_learning.py), made here from Pendulum-v1.

`two_quality_pendulum`: 40 episodes of two clearly different qualities, interleaved: every fifth
episode is the noisy scripted controller (about -150 to -250), the others are uniform random
actions (about -1200). Behaviour cloning on all of it imitates mostly noise; the data holds
good episodes to select (%BC) or to condition on (Decision Transformer).

`narrow_controller_pendulum`: 40 episodes of the scripted controller with N(0, 0.1) torque noise
(mean return about -148): good but narrow data, whose actions cover a thin band of the action
range. An actor that follows an unpenalised critic leaves that band for actions the critic has
never seen; the conservative penalty (CQL, Cal-QL) is what keeps it there.
"""

from __future__ import annotations

import numpy as np

from offrl.data.collect import collect_episodes, episodes_to_dataset
from offrl.data.dataset import Dataset
from scripted import mixed_quality, uniform_random

GOOD_EVERY = 5  # episodes 0, 5, 10, ... are the controller's


def two_quality_pendulum(references: tuple[float, float], num_episodes: int = 40) -> Dataset:
    good_count = num_episodes // GOOD_EVERY
    good = collect_episodes("Pendulum-v1", mixed_quality(0.0), num_episodes=good_count, seed=10)
    bad = collect_episodes("Pendulum-v1", uniform_random, num_episodes=num_episodes - good_count, seed=11)
    good_episodes = [good.episode(i) for i in range(good.num_episodes)]
    bad_episodes = [bad.episode(i) for i in range(bad.num_episodes)]
    episodes = [good_episodes.pop(0) if i % GOOD_EVERY == 0 else bad_episodes.pop(0) for i in range(num_episodes)]
    metadata = type(good.metadata)(**{**vars(good.metadata)})
    metadata.name = "pendulum-two-quality-v0"
    metadata.provenance = {"maker": "tests/learning_data.py two_quality_pendulum", "good_every": GOOD_EVERY}
    metadata.ref_min_score, metadata.ref_max_score = references
    return episodes_to_dataset(episodes, metadata)


def good_episode_mask(dataset: Dataset) -> np.ndarray:
    return np.arange(dataset.num_episodes) % GOOD_EVERY == 0


def narrow_controller_pendulum(references: tuple[float, float], num_episodes: int = 40) -> Dataset:
    dataset = collect_episodes("Pendulum-v1", mixed_quality(0.0, noise=0.1), num_episodes=num_episodes, seed=0,
                               name="pendulum-narrow-controller-v0")
    dataset.metadata.ref_min_score, dataset.metadata.ref_max_score = references
    return dataset


class NarrowTwoActionBandit:
    """A one-step task with two action dimensions (the least EDAC's diversity term needs: with one
    dimension it has no gradient), for the test of that term (tests/test_learning.py).

    Dataset actions lie within 0.1 (per dimension) of a state-dependent behaviour action b(s).
    The true reward is (a - b(s)) . u - 10 * max(0, |a - b(s)| - 0.15)^2: inside the data it grows
    along u, so a critic fitted there extrapolates "further along u is better"; outside the data's
    band it falls steeply. Every row is terminal, so the critic's target is the reward itself.
    An actor that trusts the critic beyond the data leaves the band and scores far below zero; one
    kept on the data scores about 0 (the behaviour mean) up to 0.14 (the band's edge along u).
    """

    observation_dim = 4
    action_dim = 2

    def __init__(self, size: int = 20_000, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.weights = rng.normal(size=(self.observation_dim, self.action_dim)) * 0.5
        self.direction = np.ones(self.action_dim) / np.sqrt(self.action_dim)
        self.observations = rng.normal(size=(size, self.observation_dim)).astype(np.float32)
        noise = rng.uniform(-0.1, 0.1, size=(size, self.action_dim))
        self.actions = np.clip(self.behaviour_action(self.observations) + noise, -1, 1).astype(np.float32)
        self.rewards = self.true_reward(self.observations, self.actions).astype(np.float32)

    def behaviour_action(self, observations: np.ndarray) -> np.ndarray:
        return 0.4 * np.tanh(observations @ self.weights)

    def true_reward(self, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
        offset = actions - self.behaviour_action(observations)
        outside = np.maximum(0.0, np.linalg.norm(offset, axis=-1) - 0.15)
        return offset @ self.direction - 10.0 * outside**2
