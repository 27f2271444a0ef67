"""Observation perturbation at evaluation time (`offrl evaluate --obs-noise ε`), for robustness
tests in the style of RORL (Yang et al. 2022, "RORL: Robust Offline Reinforcement Learning via
Conservative Smoothing"), whose random attack perturbs each observation uniformly inside an
l-infinity ball of radius ε before the policy sees it (the environment's state is untouched).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from offrl.errors import ConfigError


def check_noise_scale(scale: float) -> None:
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale >= 0):
        raise ConfigError(f"--obs-noise is {scale}; expected a finite number >= 0 (the radius of the uniform perturbation).")


class NoisyObservations:
    """`policy` acting on observations + U(-scale, scale) noise, drawn from a seeded generator."""

    def __init__(self, policy: Callable[..., np.ndarray], scale: float, seed: int = 0):
        check_noise_scale(scale)
        self.policy, self.scale = policy, float(scale)
        self.rng = np.random.default_rng(seed)
        self.stateful = bool(getattr(policy, "stateful", False))

    def reset(self) -> None:
        if self.stateful:
            self.policy.reset()

    def __call__(self, observations: np.ndarray, *args: Any) -> np.ndarray:
        noise = self.rng.uniform(-self.scale, self.scale, size=np.shape(observations)).astype(np.float32)
        return self.policy(np.asarray(observations, np.float32) + noise, *args)
