"""A trained policy as a callable: observations in, environment actions out.

Most algorithms act on the current observation alone; their `Policy` is a plain callable
`policy(observations) -> actions`. An algorithm whose action depends on the episode so far
(Decision Transformer) defines, besides the contract's `act`:

- `init_context(state, num_envs, spec) -> context`: an empty history for `num_envs` episodes,
  any pytree of arrays;
- `act_in_context(state, context, observations, rewards, starts, key, deterministic)
  -> (actions, context)`: one step for every episode. `rewards[i]` is the reward received on the
  step that led to `observations[i]`; `starts[i]` says that `observations[i]` begins a new
  episode, whose history the algorithm clears (rewards are then ignored). Pure and batched, like
  `act`, and given normalised observations and rewards scaled as in training.

Its `Policy` is stateful (`policy.stateful` is True): it keeps one history per row of the
observations it is called with, `policy(observations, rewards, starts)` advances them by one step,
and `policy.reset()` (or a call with a different number of rows) starts fresh episodes.
An algorithm with `ACTS_ON_COSTS = True` (the Constrained Decision Transformer) also gets each
step's cost: its `act_in_context` takes `costs=` like `rewards`, and its `Policy.uses_costs` tells
the rollout to pass them (`policy(observations, rewards, starts, costs=...)`).
An algorithm that acts toward a target cost (CDT) defines `at_target_cost(state, k) -> state`;
`Policy.at_target_cost(k)` then gives the policy conditioned on k (`offrl evaluate --target-cost`).
`offrl.evaluate.rollout.evaluate_policy` drives both kinds; a memoryless `Policy` also accepts
(and ignores) `rewards` and `starts`, and its `reset()` does nothing.
"""

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
        self.stateful = hasattr(algo, "act_in_context")
        self.uses_costs = bool(getattr(algo, "ACTS_ON_COSTS", False))
        self.spec = Spec(observation_dim=len(normalizer.observation_mean), action_dim=len(normalizer.action_low))
        self._context = None
        mean, std = jnp.asarray(normalizer.observation_mean), jnp.asarray(normalizer.observation_std)
        low, high = jnp.asarray(normalizer.action_low), jnp.asarray(normalizer.action_high)
        reward_scale, reward_bias = normalizer.reward_scale, normalizer.reward_bias

        def to_env(scaled):
            return low + (scaled + 1.0) * 0.5 * (high - low)

        def act(state, observations):
            return to_env(algo.act(state, (observations - mean) / std, jax.random.PRNGKey(0), True))

        def act_in_context(state, context, observations, rewards, starts, costs):
            extra = {"costs": costs} if self.uses_costs else {}
            scaled, context = algo.act_in_context(
                state, context, (observations - mean) / std, rewards * reward_scale + reward_bias, starts, jax.random.PRNGKey(0), True, **extra
            )
            return to_env(scaled), context

        self._act = jax.jit(act)
        self._act_in_context = jax.jit(act_in_context) if self.stateful else None

    @property
    def conditions_on_target_cost(self) -> bool:
        """Whether the policy acts toward a target cost (the algorithm defines `at_target_cost`)."""
        return hasattr(self.algo, "at_target_cost")

    def at_target_cost(self, target_cost: float) -> "Policy":
        """A fresh policy acting toward `target_cost` (only where `conditions_on_target_cost`)."""
        return Policy(self.algo, self.algo.at_target_cost(self.state, target_cost), self.normalizer)

    def reset(self) -> None:
        """Forget every episode's history: the next call starts new episodes."""
        self._context = None

    def __call__(self, observations, rewards=None, starts=None, costs=None) -> np.ndarray:
        observations = np.asarray(observations, dtype=np.float32)
        single = observations.ndim == 1
        batch = observations[None] if single else observations
        if not self.stateful:
            actions = np.asarray(self._act(self.state, batch))
            return actions[0] if single else actions
        n = len(batch)
        if self._context is None or len(jax.tree.leaves(self._context)[0]) != n:
            self._context = self.algo.init_context(self.state, n, self.spec)  # empty: every row starts
        rewards = np.zeros(n, np.float32) if rewards is None else np.asarray(rewards, np.float32).reshape(n)
        starts = np.zeros(n, bool) if starts is None else np.asarray(starts, bool).reshape(n)
        costs = np.zeros(n, np.float32) if costs is None else np.asarray(costs, np.float32).reshape(n)
        actions, self._context = self._act_in_context(self.state, self._context, batch, rewards, starts, costs)
        actions = np.asarray(actions)
        return actions[0] if single else actions


def load_policy(run_dir: str | Path, checkpoint: str | Path | None = None) -> Policy:
    """Load the policy of a finished (or checkpointed) run without the trainer (a stateful
    `Policy` for a history-dependent algorithm; see the module docstring)."""
    from offrl.algos import get_algorithm
    from offrl.train.checkpoint import latest_valid_checkpoint, load_checkpoint
    from offrl.train.initial_state import init_state
    from offrl.train.configs import config_from_json
    from offrl.train.run_dir import RunDirectory
    from offrl.errors import ConfigError

    run = RunDirectory(run_dir)
    config = run.read_config()
    algo = get_algorithm(config["algorithm"])
    algo_config = config_from_json(algo.Config, config["algorithm_config"], where=str(run.path / "config.json"))
    spec = Spec(**config["spec"])
    normalizer = Normalizer.from_json(config["normalizer"])
    template = init_state(algo, jax.random.PRNGKey(0), spec, algo_config)
    if checkpoint:
        state, _, _ = load_checkpoint(Path(checkpoint), template)
        return Policy(algo, state, normalizer)
    # The newest checkpoint that verifies; a corrupted newer one is reported and skipped.
    found = latest_valid_checkpoint(run.checkpoints, template)
    if found is None:
        raise ConfigError(f"Run directory '{run.path}' has no checkpoint; expected checkpoints/step_*.msgpack.")
    return Policy(algo, found.state, normalizer)
