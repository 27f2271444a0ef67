"""A scripted swing-up controller for Pendulum-v1, used to make small real datasets in tests.

Energy pumping far from upright, PD control near upright. It scores about -150 per episode;
a uniform random policy scores about -1200.
"""

from __future__ import annotations

import numpy as np


def swing_up(observations: np.ndarray) -> np.ndarray:
    cos, sin, velocity = observations.T
    angle = np.arctan2(sin, cos)
    # Pendulum-v1: angular acceleration = 15 sin(angle) + 3 torque, so E = v^2/2 + 15 cos(angle)
    # is 15 when balanced upright; pump energy in the direction of motion until it gets there.
    energy = 0.5 * velocity**2 + 15.0 * cos
    direction = np.sign(velocity + 1e-6)
    pump = np.where(energy < 15.0, 2.0 * direction, -1.0 * direction)
    balance = -(10.0 * angle + 2.0 * velocity)
    return np.clip(np.where(cos > 0.85, balance, pump), -2.0, 2.0)[:, None]


def mixed_quality(random_fraction: float, noise: float = 0.5):
    """Per step: a uniform random action with probability `random_fraction`, else the noisy controller."""

    def policy(observations: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        scripted = swing_up(observations) + rng.normal(0.0, noise, (len(observations), 1))
        random = rng.uniform(-2.0, 2.0, scripted.shape)
        return np.where(rng.uniform(size=scripted.shape) < random_fraction, random, scripted)

    return policy


def uniform_random(observations: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(-2.0, 2.0, (len(observations), 1))
