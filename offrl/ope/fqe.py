"""Fitted Q evaluation (Le, Voloshin and Yue 2019), with a bootstrap over episodes.

FQE regresses Q(s, a) on r + γ (1 - terminal) Q'(s', π(s')), where π is the policy being evaluated
and Q' a target network, on the logged transitions only; the policy's value is then the mean of
Q(s0, π(s0)) over the dataset's episode starts. A timeout bootstraps (the process went on), a
terminal does not.

Uncertainty: `num_bootstrap` more Q-networks are fitted at once (vmapped), each on its own resample
of the episodes with replacement, and each estimates the value from the start states of its own
resample; the interval is the percentile interval of those estimates (Hao et al. 2021,
"Bootstrapping Fitted Q-Evaluation for Off-Policy Inference"). Head 0 fits every episode once and
gives the point estimate. Each head also carries FQE's optimisation noise (initialisation,
minibatches), so head 0 falls outside the other heads' range with probability about 2/(B + 1)
even without bias (B = 4: 40%, B = 10: 18%; benchmarks/ope.md measures it): keep B >= 10.

Rewards are scaled by (1 - γ) / mean|r| so that Q is of order one whatever the reward units; the
estimate is scaled back.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from offrl.data.dataset import Dataset
from offrl.errors import ConfigError
from offrl.nets.mlp import MLP


@dataclass(frozen=True)
class FQEConfig:
    steps: int = 20_000  # gradient steps per policy
    hidden_dims: tuple[int, ...] = (256, 256)  # d3rlpy FQE's default encoder (d3rlpy/models/encoders.py VectorEncoderFactory)
    learning_rate: float = 1e-4  # d3rlpy FQEConfig.learning_rate (d3rlpy/ope/fqe.py)
    batch_size: int = 256
    target_update_interval: int = 100  # hard target copy every N steps: d3rlpy FQEConfig.target_update_interval
    discount: float = 0.99
    num_bootstrap: int = 10  # extra networks on episode resamples, for the interval (Hao et al. 2021)
    confidence: float = 0.95
    seed: int = 0

    def validate(self) -> None:
        for name in ("steps", "batch_size", "target_update_interval"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--fqe-{name.replace('_', '-')} is {getattr(self, name)}; expected a positive integer.")
        if not (0.0 < self.discount < 1.0):
            raise ConfigError(f"--discount is {self.discount}; expected a number in (0, 1).")
        if self.num_bootstrap < 2:
            raise ConfigError(f"--bootstrap is {self.num_bootstrap}; expected at least 2 resamples for an interval.")
        if not (0.0 < self.confidence < 1.0):
            raise ConfigError(f"--confidence is {self.confidence}; expected a number in (0, 1).")


@dataclass(frozen=True)
class ValueEstimate:
    estimate: float
    low: float
    high: float
    replicates: np.ndarray  # the bootstrap heads' estimates


class _QHead(nn.Module):
    hidden_dims: tuple[int, ...]

    @nn.compact
    def __call__(self, observations, actions):
        return MLP(self.hidden_dims, 1)(jnp.concatenate([observations, actions], -1))[..., 0]


def episode_resamples(dataset: Dataset, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(episode indices (count+1, E), row indices padded (count+1, N_max)) with row counts: resample 0
    is every episode once; the others draw E episodes with replacement."""
    episodes = [np.arange(dataset.num_episodes)] + [rng.integers(0, dataset.num_episodes, dataset.num_episodes)
                                                     for _ in range(count)]
    starts, ends = dataset.episode_starts, dataset.episode_ends
    rows = [np.concatenate([np.arange(starts[e], ends[e]) for e in chosen]) for chosen in episodes]
    width = max(len(r) for r in rows)
    padded = np.stack([np.pad(r, (0, width - len(r))) for r in rows])
    return np.stack(episodes), padded, np.array([len(r) for r in rows])


def fit_fqe(dataset: Dataset, policy_actions: Callable[[np.ndarray], np.ndarray], scale_actions: Callable,
            config: FQEConfig, next_actions: np.ndarray | None = None, start_actions: np.ndarray | None = None,
            ) -> tuple[ValueEstimate, Callable[[np.ndarray, np.ndarray], np.ndarray]]:
    """Fit FQE for `policy_actions` (raw observations -> actions in the env's bounds) on `dataset`.

    `scale_actions` maps env actions to [-1, 1] (the run's normaliser). `next_actions` /
    `start_actions` may be given instead of asking the policy (the behaviour policy's own next
    actions: on-policy FQE). Returns the estimate and `q(observations, actions)` of head 0 in
    reward units (used by the doubly robust estimator).
    """
    config.validate()
    rng = np.random.default_rng(config.seed)
    mean = dataset.observations.mean(0)
    std = dataset.observations.std(0) + 1e-3
    reward_unit = float(np.mean(np.abs(dataset.rewards))) or 1.0
    to_q_units = (1.0 - config.discount) / reward_unit
    if next_actions is None:
        next_actions = _batched(policy_actions, dataset.next_observations)
    first = dataset.observations[dataset.episode_starts]
    if start_actions is None:
        start_actions = _batched(policy_actions, first)
    data = {
        "obs": (dataset.observations - mean) / std,
        "actions": np.clip(scale_actions(dataset.actions), -1, 1),
        "rewards": dataset.rewards * to_q_units,
        "next_obs": (dataset.next_observations - mean) / std,
        "next_actions": np.clip(scale_actions(next_actions), -1, 1),
        "not_done": 1.0 - dataset.terminals.astype(np.float32),
    }
    data = {k: jnp.asarray(np.asarray(v, np.float32)) for k, v in data.items()}
    episodes, rows, counts = episode_resamples(dataset, config.num_bootstrap, rng)
    heads = 1 + config.num_bootstrap
    network = _QHead(tuple(config.hidden_dims))
    obs_dim, action_dim = dataset.spec.observation_dim, dataset.spec.action_dim
    keys = jax.random.split(jax.random.PRNGKey(config.seed), heads + 1)
    params = jax.vmap(lambda k: network.init(k, jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim))))(keys[1:])
    q_all = jax.vmap(network.apply, in_axes=(0, None, None))  # every head on the same inputs
    train = _trainer(config)
    params, _ = train(params, keys[0], data, jnp.asarray(rows), jnp.asarray(counts))
    start_obs = jnp.asarray((first - mean) / std, jnp.float32)
    start_act = jnp.asarray(np.clip(scale_actions(start_actions), -1, 1), jnp.float32)
    start_values = np.asarray(q_all(params, start_obs, start_act)) / to_q_units  # (heads, E)
    per_head = np.array([start_values[h, episodes[h]].mean() for h in range(heads)])
    tail = (1 - config.confidence) / 2 * 100
    low, high = np.percentile(per_head[1:], [tail, 100 - tail])
    head0 = jax.tree.map(lambda leaf: leaf[0], params)

    def q_values(observations: np.ndarray, actions: np.ndarray) -> np.ndarray:
        obs = jnp.asarray((observations - mean) / std, jnp.float32)
        act = jnp.asarray(np.clip(scale_actions(actions), -1, 1), jnp.float32)
        return np.asarray(network.apply(head0, obs, act)) / to_q_units

    return ValueEstimate(float(per_head[0]), float(low), float(high), per_head[1:]), q_values


@functools.lru_cache(maxsize=8)
def _trainer(config: FQEConfig):
    """The jitted FQE fit for `config`: one compile per config and data shape, reused across the
    checkpoints and policies of one `offrl ope` call."""
    network = _QHead(tuple(config.hidden_dims))
    optimizer = optax.adam(config.learning_rate)
    heads = 1 + config.num_bootstrap

    def head_loss(p, target_p, data, index):
        batch = {k: v[index] for k, v in data.items()}
        target = batch["rewards"] + config.discount * batch["not_done"] * network.apply(target_p, batch["next_obs"], batch["next_actions"])
        q = network.apply(p, batch["obs"], batch["actions"])
        return jnp.mean((q - jax.lax.stop_gradient(target)) ** 2)

    def train(params, key, data, rows, counts):
        def step(carry, key):
            params, target, opt_state, count = carry
            positions = jnp.floor(jax.random.uniform(key, (heads, config.batch_size)) * counts[:, None]).astype(jnp.int32)
            index = jnp.take_along_axis(rows, positions, axis=1)
            losses, grads = jax.vmap(jax.value_and_grad(head_loss), in_axes=(0, 0, None, 0))(params, target, data, index)
            updates, opt_state = jax.vmap(optimizer.update)(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            count = count + 1
            target = jax.tree.map(lambda t, p: jnp.where(count % config.target_update_interval == 0, p, t), target, params)
            return (params, target, opt_state, count), losses.mean()

        carry = (params, params, jax.vmap(optimizer.init)(params), jnp.zeros((), jnp.int32))
        (params, _, _, _), losses = jax.lax.scan(step, carry, jax.random.split(key, config.steps))
        return params, losses

    return jax.jit(train)


def _batched(function: Callable[[np.ndarray], np.ndarray], values: np.ndarray, size: int = 65_536) -> np.ndarray:
    return np.concatenate([np.asarray(function(values[i:i + size])) for i in range(0, len(values), size)])
