"""Datasets for the learning tests (tests/test_learning.py), made here from Pendulum-v1.

`two_quality_pendulum`: 40 episodes of two clearly different qualities, interleaved: every fifth
episode is the noisy scripted controller (about -150 to -250), the others are uniform random
actions (about -1200). Behaviour cloning on all of it imitates mostly noise; the data holds
good episodes to select (%BC) or to condition on (Decision Transformer).

`narrow_controller_pendulum`: 40 episodes of the scripted controller with N(0, 0.1) torque noise
(mean return about -148): good but narrow data, whose actions cover a thin band of the action
range. An actor that follows an unpenalised critic leaves that band for actions the critic has
never seen; the conservative penalty (CQL, Cal-QL) is what keeps it there.

`mostly_idle_pendulum`: 40 episodes where, per step, the torque is N(0, 0.1) ("idle") with
probability 0.8, else the scripted controller's with N(0, 0.1) noise (mean return about -850).
Imitation averages the two and stays near -800, like the mostly-random data; unlike those data,
the actions cover only thin bands around 0 and the controller's torque, so a critic that is not
kept on them overestimates the actions between and beyond (the model-based learning tests,
tests/test_model_based_learning.py).

`BandReach`: a 2-D point reaching the origin, with dataset actions in a narrow band around a slow
behaviour controller, whose true dynamics punish actions outside a wider band (a "cliff") or, with
`cliff=0`, are plain linear everywhere: a model-based test task where it is known whether the
model's extrapolation beyond the data can be trusted (tests/test_model_based_learning.py).
"""

from __future__ import annotations

import numpy as np

from offrl.data.collect import collect_episodes
from dataset_helpers import interleaved_episodes
from offrl.data.dataset import Dataset, DatasetMetadata
from scripted import mixed_quality, swing_up, uniform_random

GOOD_EVERY = 5  # episodes 0, 5, 10, ... are the controller's


def two_quality_pendulum(references: tuple[float, float], num_episodes: int = 40) -> Dataset:
    good_count = num_episodes // GOOD_EVERY
    good = collect_episodes("Pendulum-v1", mixed_quality(0.0), num_episodes=good_count, seed=10)
    bad = collect_episodes("Pendulum-v1", uniform_random, num_episodes=num_episodes - good_count, seed=11)
    return interleaved_episodes(good, bad, GOOD_EVERY, "pendulum-two-quality-v0",
                                {"maker": "tests/learning_data.py two_quality_pendulum", "good_every": GOOD_EVERY}, references)


def good_episode_mask(dataset: Dataset) -> np.ndarray:
    return np.arange(dataset.num_episodes) % GOOD_EVERY == 0


def narrow_controller_pendulum(references: tuple[float, float], num_episodes: int = 40) -> Dataset:
    dataset = collect_episodes("Pendulum-v1", mixed_quality(0.0, noise=0.1), num_episodes=num_episodes, seed=0,
                               name="pendulum-narrow-controller-v0")
    dataset.metadata.ref_min_score, dataset.metadata.ref_max_score = references
    return dataset


def mostly_idle(idle_fraction: float = 0.8, noise: float = 0.1):
    """Per step: N(0, noise) torque with probability `idle_fraction`, else the controller's plus N(0, noise)."""

    def policy(observations: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        scripted = swing_up(observations) + rng.normal(0.0, noise, (len(observations), 1))
        idle = rng.normal(0.0, noise, scripted.shape)
        return np.where(rng.uniform(size=scripted.shape) < idle_fraction, idle, scripted)

    return policy


def mostly_idle_pendulum(references: tuple[float, float], num_episodes: int = 40) -> Dataset:
    dataset = collect_episodes("Pendulum-v1", mostly_idle(), num_episodes=num_episodes, seed=0,
                               name="pendulum-mostly-idle-v0")
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


class BandReach:
    """A 2-D point mass steered to the origin in 20 steps: s' = s + 0.2 a (a in [-1, 1]^2), reward
    -||s'||, starts uniform in [-1, 1]^2. Behaviour, per step: with probability `slow_share` the
    action a = -SLOW tanh(2 s) (SLOW < 0: drifting away from the origin), else a = -FAST tanh(2 s)
    (toward it), plus U(-0.1, 0.1) noise per dimension. So the dataset's actions lie within 0.15 of
    the segment between the two, and imitation averages them. With `cliff` > 0 an action more than
    `edge` (0.25) from that segment also pushes the point away from the origin by `cliff` x the
    excess: a model fitted on the data extrapolates "faster is better" beyond it and is wrong
    there. With cliff 0 the linear dynamics hold everywhere.
    """

    observation_dim = 2
    action_dim = 2
    length = 20  # steps per episode
    SLOW, FAST = -0.2, 0.3

    def __init__(self, cliff: float = 2.0, edge: float = 0.25, slow_share: float = 0.8, noise: float = 0.0,
                 speed_noise: float = 0.0):
        self.cliff, self.edge, self.slow_share, self.noise, self.speed_noise = cliff, edge, slow_share, noise, speed_noise

    def band_action(self, observations: np.ndarray, speed: float) -> np.ndarray:
        return -speed * np.tanh(2.0 * observations)

    def excess(self, observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """How far beyond `edge` each action is from the segment of band actions."""
        direction = -np.tanh(2.0 * observations)
        speed = (actions * direction).sum(-1) / np.maximum((direction ** 2).sum(-1), 1e-12)
        nearest = np.clip(speed, self.SLOW, self.FAST)[:, None] * direction
        return np.maximum(0.0, np.linalg.norm(actions - nearest, axis=-1) - self.edge)

    def step(self, observations: np.ndarray, actions: np.ndarray, rng: np.random.Generator | None = None):
        actions = np.clip(actions, -1.0, 1.0)
        away = observations / np.maximum(np.linalg.norm(observations, axis=-1, keepdims=True), 1e-6)
        next_observations = observations + 0.2 * actions + self.cliff * self.excess(observations, actions)[:, None] * away
        if (self.noise or self.speed_noise) and rng is not None:
            std = self.noise + self.speed_noise * np.linalg.norm(actions, axis=-1, keepdims=True)
            next_observations = next_observations + std * rng.normal(size=next_observations.shape)
        return next_observations.astype(np.float32), -np.linalg.norm(next_observations, axis=-1).astype(np.float32)

    def behaviour(self, observations: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        slow = rng.uniform(size=(len(observations), 1)) < self.slow_share
        centre = np.where(slow, self.band_action(observations, self.SLOW), self.band_action(observations, self.FAST))
        return np.clip(centre + rng.uniform(-0.1, 0.1, observations.shape), -1.0, 1.0).astype(np.float32)

    def dataset(self, num_episodes: int = 400, seed: int = 0) -> Dataset:
        rng = np.random.default_rng(seed)
        observations = rng.uniform(-1.0, 1.0, (num_episodes, self.observation_dim)).astype(np.float32)
        rows = {name: [] for name in ("observations", "actions", "rewards", "next_observations")}
        for _ in range(self.length):
            actions = self.behaviour(observations, rng)
            next_observations, rewards = self.step(observations, actions, rng)
            for name, values in zip(rows, (observations, actions, rewards, next_observations)):
                rows[name].append(values)
            observations = next_observations
        # (step, episode) -> episode-major rows
        flat = {name: np.swapaxes(np.stack(values), 0, 1).reshape(num_episodes * self.length, -1)
                for name, values in rows.items()}
        last = np.tile(np.arange(self.length) == self.length - 1, num_episodes)
        metadata = DatasetMetadata(name="band-reach-v0", action_low=-np.ones(2, np.float32),
                                   action_high=np.ones(2, np.float32), provenance={"maker": "tests/learning_data.py BandReach"})
        return Dataset(observations=flat["observations"], actions=flat["actions"], rewards=flat["rewards"][:, 0],
                       next_observations=flat["next_observations"], terminals=np.zeros(len(last), bool), timeouts=last,
                       episode_starts=np.arange(num_episodes) * self.length, metadata=metadata)

    def evaluate(self, policy, num_starts: int = 500, seed: int = 123) -> float:
        """Mean return of `policy(observations) -> actions` from `num_starts` fixed starts."""
        observations = np.random.default_rng(seed).uniform(-1.0, 1.0, (num_starts, self.observation_dim)).astype(np.float32)
        total = np.zeros(num_starts)
        for _ in range(self.length):
            observations, rewards = self.step(observations, np.asarray(policy(observations)))
            total += rewards
        return float(total.mean())
