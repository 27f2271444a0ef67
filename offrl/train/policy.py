"""A trained policy as a plain callable: observations in, environment actions out."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from offrl.data.transforms import Normalizer
from offrl.types import Spec


class Policy:
    """Applies the run's normaliser, the algorithm's deterministic `act`, and rescales actions.

    Accepts one observation (obs_dim,) or a batch (n, obs_dim); returns NumPy actions in the
    environment's bounds, of the same leading shape.
    """

    def __init__(self, algo: ModuleType, state: Any, normalizer: Normalizer):
        self.algo = algo
        self.state = state
        self.normalizer = normalizer
        mean, std = jnp.asarray(normalizer.observation_mean), jnp.asarray(normalizer.observation_std)
        low, high = jnp.asarray(normalizer.action_low), jnp.asarray(normalizer.action_high)

        def act(state, observations):
            scaled = algo.act(state, (observations - mean) / std, jax.random.PRNGKey(0), True)
            return low + (scaled + 1.0) * 0.5 * (high - low)

        self._act = jax.jit(act)

    def __call__(self, observations) -> np.ndarray:
        observations = np.asarray(observations, dtype=np.float32)
        single = observations.ndim == 1
        actions = np.asarray(self._act(self.state, observations[None] if single else observations))
        return actions[0] if single else actions


def load_policy(run_dir: str | Path, checkpoint: str | Path | None = None) -> Policy:
    """Load the policy of a finished (or checkpointed) run without the trainer."""
    from offrl.algos import get_algorithm
    from offrl.train.checkpoint import latest_valid_checkpoint, load_checkpoint
    from offrl.train.configs import config_from_json
    from offrl.train.run_dir import RunDirectory
    from offrl.errors import ConfigError

    run = RunDirectory(run_dir)
    config = run.read_config()
    algo = get_algorithm(config["algorithm"])
    algo_config = config_from_json(algo.Config, config["algorithm_config"], where=str(run.path / "config.json"))
    spec = Spec(**config["spec"])
    normalizer = Normalizer.from_json(config["normalizer"])
    template = algo.init(jax.random.PRNGKey(0), spec, algo_config)
    if checkpoint:
        state, _, _ = load_checkpoint(Path(checkpoint), template)
        return Policy(algo, state, normalizer)
    # The newest checkpoint that verifies; a corrupted newer one is reported and skipped.
    found = latest_valid_checkpoint(run.checkpoints, template)
    if found is None:
        raise ConfigError(f"Run directory '{run.path}' has no checkpoint; expected checkpoints/step_*.msgpack.")
    return Policy(algo, found.state, normalizer)
