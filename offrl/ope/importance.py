"""Importance-sampling estimators: weighted per-decision IS and weighted doubly robust.

Both need the probability of each logged action under the behaviour policy, which logs rarely
record: a Gaussian behaviour model is fitted by maximum likelihood (behaviour cloning) on the
dataset, in actions scaled to [-1, 1]. They also need a density for the evaluated policy; the
policies offrl trains act deterministically, which has none, so the evaluated policy is its
deterministic action plus Gaussian noise of standard deviation `target_noise` (in the scaled
action space): the value of deploying the policy with that much exploration noise.

- WPDIS (Precup, Sutton and Singh 2000): V = Σ_t γ^t Σ_i w_it r_it / Σ_i w_it, with w_it the
  product of the ratios π/β up to step t of episode i; an episode that ended by a terminal keeps
  contributing zero rewards, one cut by a timeout drops out of later steps.
- Weighted DR (Thomas and Brunskill 2016, WDR): the same normalised weights, with FQE's Q as
  control variate: Σ_i Σ_t γ^t [w̄_it (r_it - Q(s_it, a_it)) + w̄_i,t-1 V(s_it)], V(s) = Q(s, π(s)).

Effective sample size: ESS = (Σ_i w_i)² / Σ_i w_i² of the whole-episode weights; below 10% of the
episodes the estimate leans on a handful of episodes and the output says its weights are
degenerate. Intervals: percentile bootstrap over episodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from offrl.data.dataset import Dataset
from offrl.nets.mlp import MLP

DEGENERATE_ESS_FRACTION = 0.1  # ESS below this fraction of the episodes: the weights are degenerate
LOG_RATIO_CLIP = 20.0  # per-step log ratio bound, so one wild action cannot overflow float64


@dataclass(frozen=True)
class ImportanceEstimate:
    estimate: float
    low: float
    high: float
    ess: float
    num_episodes: int

    @property
    def degenerate(self) -> bool:
        return self.ess < DEGENERATE_ESS_FRACTION * self.num_episodes


class _GaussianBehaviour(nn.Module):
    action_dim: int
    hidden_dims: tuple[int, ...]

    @nn.compact
    def __call__(self, observations):
        features = MLP(self.hidden_dims)(observations)
        mean = jnp.tanh(nn.Dense(self.action_dim)(features))
        log_std = jnp.clip(nn.Dense(self.action_dim)(features), -5.0, 1.0)
        return mean, log_std


def _gaussian_log_prob(mean, log_std, actions):
    z = (actions - mean) / jnp.exp(log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * jnp.log(2 * jnp.pi), axis=-1)


def fit_behaviour_log_probs(observations: np.ndarray, scaled_actions: np.ndarray, steps: int = 5_000,
                            hidden_dims: tuple[int, ...] = (256, 256), seed: int = 0) -> np.ndarray:
    """log β(a|s) of every logged action under a Gaussian BC model fitted on the same data."""
    mean, std = observations.mean(0), observations.std(0) + 1e-3
    obs = jnp.asarray((observations - mean) / std, jnp.float32)
    actions = jnp.asarray(scaled_actions, jnp.float32)
    model = _GaussianBehaviour(actions.shape[1], tuple(hidden_dims))
    key, init_key = jax.random.split(jax.random.PRNGKey(seed))
    params = model.init(init_key, obs[:1])
    optimizer = optax.adam(1e-3)

    def loss(p, index):
        mu, log_std = model.apply(p, obs[index])
        return -jnp.mean(_gaussian_log_prob(mu, log_std, actions[index]))

    def step(carry, key):
        p, state = carry
        index = jax.random.randint(key, (256,), 0, obs.shape[0])
        grads = jax.grad(loss)(p, index)
        updates, state = optimizer.update(grads, state, p)
        return (optax.apply_updates(p, updates), state), None

    (params, _), _ = jax.jit(lambda p, s, k: jax.lax.scan(step, (p, s), jax.random.split(k, steps)))(params, optimizer.init(params), key)
    mu, log_std = jax.jit(model.apply)(params, obs)
    return np.asarray(_gaussian_log_prob(mu, log_std, actions), np.float64)


def target_log_probs(policy_scaled: np.ndarray, scaled_actions: np.ndarray, noise: float) -> np.ndarray:
    """log π(a|s) of the logged actions for the policy's action plus N(0, noise²) per dimension."""
    z = (scaled_actions - policy_scaled) / noise
    return np.sum(-0.5 * z**2 - np.log(noise) - 0.5 * np.log(2 * np.pi), axis=-1)


def _padded(dataset: Dataset, values: np.ndarray) -> np.ndarray:
    """Per-step values as (episodes, max_length), zero after each episode's end."""
    lengths = dataset.episode_lengths
    out = np.zeros((dataset.num_episodes, lengths.max()), np.float64)
    for i, (start, length) in enumerate(zip(dataset.episode_starts, lengths)):
        out[i, :length] = values[start:start + length]
    return out


class EpisodeArrays:
    """Everything the estimators need, per episode and step."""

    def __init__(self, dataset: Dataset, log_ratios: np.ndarray, discount: float,
                 q_logged: np.ndarray | None = None, v_states: np.ndarray | None = None):
        lengths = dataset.episode_lengths
        steps = np.arange(lengths.max())
        self.alive = steps[None, :] < lengths[:, None]
        ended_terminal = dataset.terminals[dataset.episode_ends - 1]
        # After a terminal the episode stays in the average with zero reward and a frozen weight.
        self.counts = self.alive | ended_terminal[:, None]
        log_weights = np.cumsum(_padded(dataset, np.clip(log_ratios, -LOG_RATIO_CLIP, LOG_RATIO_CLIP)), axis=1)
        last = np.take_along_axis(log_weights, (lengths - 1)[:, None], axis=1)
        log_weights = np.where(self.alive, log_weights, last)
        self.log_weights = log_weights - log_weights.max()  # scale-free: only ratios between episodes matter
        self.rewards = _padded(dataset, dataset.rewards)
        self.discounts = discount ** steps
        self.q_logged = None if q_logged is None else _padded(dataset, q_logged)
        self.v_states = None if v_states is None else _padded(dataset, v_states)
        self.final_log_weights = log_weights[np.arange(len(lengths)), lengths - 1]


def _normalised(weights: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = np.where(mask, weights, 0.0)
    total = weights.sum(axis=0, keepdims=True)
    return np.divide(weights, total, out=np.zeros_like(weights), where=total > 0)


def wpdis(arrays: EpisodeArrays, episodes: np.ndarray) -> float:
    weights = _normalised(np.exp(arrays.log_weights[episodes]), arrays.counts[episodes])
    return float(np.sum(arrays.discounts * np.sum(weights * arrays.rewards[episodes], axis=0)))


def weighted_dr(arrays: EpisodeArrays, episodes: np.ndarray) -> float:
    weights = _normalised(np.exp(arrays.log_weights[episodes]), arrays.counts[episodes])
    previous = np.concatenate([np.full((len(episodes), 1), 1.0 / len(episodes)), weights[:, :-1]], axis=1)
    previous = np.where(arrays.alive[episodes], previous, 0.0)
    terms = weights * (arrays.rewards[episodes] - arrays.q_logged[episodes]) + previous * arrays.v_states[episodes]
    return float(np.sum(arrays.discounts * terms.sum(axis=0)))


def importance_estimate(arrays: EpisodeArrays, estimator: Callable[[EpisodeArrays, np.ndarray], float],
                        reps: int, confidence: float, seed: int) -> ImportanceEstimate:
    count = len(arrays.final_log_weights)
    rng = np.random.default_rng(seed)
    point = estimator(arrays, np.arange(count))
    replicates = np.array([estimator(arrays, rng.integers(0, count, count)) for _ in range(reps)])
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    w = np.exp(arrays.final_log_weights - arrays.final_log_weights.max())
    ess = float(w.sum() ** 2 / np.sum(w**2))
    return ImportanceEstimate(point, float(low), float(high), ess, count)
