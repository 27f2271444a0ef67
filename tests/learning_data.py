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
