"""AWAC (Nair, Gupta, Dalal & Levine, 2020, "AWAC: Accelerating Online Reinforcement Learning with
Offline Datasets").

A critic of the *current* policy, and an actor fitted by advantage-weighted regression onto the
dataset's actions, so the policy never leaves the data's support by gradient ascent on Q:
    critic: Q_i(s, a) -> r + gamma * (1 - done) * min_j Q'_j(s', a'),   a' ~ pi(.|s')
    actor:  minimise -E[w(s, a) * log pi(a|s)],   w = min(exp(A(s, a) / lambda), w_max)
            A(s, a) = min_j Q_j(s, a) - min_j Q_j(s, a_pi),   a_pi ~ pi(.|s)   (V(s) from one policy sample)
Order within an update follows CORL's `awac.py`: critic step, actor step with the freshly
updated critics, then the Polyak update of the target critics.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training.train_state import TrainState

import flax.linen as nn

from offrl.nets import MLP, CriticEnsemble
from offrl.nets.policies import gaussian_log_prob
from offrl.types import Batch, Spec

NAME = "awac"
DESCRIPTION = "Advantage-Weighted Actor-Critic: critic of the current policy, actor by exp(A/lambda)-weighted regression."
PAPER = "Nair, Gupta, Dalal & Levine 2020, AWAC: Accelerating Online Reinforcement Learning with Offline Datasets"


@dataclass(frozen=True)
class Config:
    actor_learning_rate: float = 3e-4  # CORL awac.py learning_rate (actor and both critics)
    critic_learning_rate: float = 3e-4  # CORL awac.py learning_rate
    hidden_dims: tuple[int, ...] = (256, 256, 256)  # CORL awac.py: three hidden layers of hidden_dim 256
    batch_size: int = 256  # CORL awac.py
    discount: float = 0.99  # CORL awac.py gamma
    tau: float = 5e-3  # CORL awac.py: Polyak rate of the target critics
    awac_lambda: float = 1.0 / 3.0  # CORL configs/offline/awac/*/*_v2.yaml (D4RL gym): awac_lambda 0.3333
    max_weight: float = 100.0  # CORL awac.py exp_adv_max: exp(A / lambda) is clipped here
    log_std_min: float = -20.0  # CORL awac.py Actor: learned state-independent log-std, clamped to [-20, 2]
    log_std_max: float = 2.0
    normalize_observations: bool = True  # CORL awac.py standardises states (mean, std + 1e-3)
    normalize_rewards: bool = False  # CORL awac.py normalize_reward False for D4RL gym


@struct.dataclass
class State:
    actor: TrainState
    critic: TrainState
    critic_target: dict
    rng: jax.Array


class Actor(nn.Module):
    """CORL's AWAC actor: a linear-output MLP mean and a learned state-independent log-std.

    The mean is not squashed: dataset actions often sit exactly on the bounds, and a tanh mean
    would saturate chasing them. Sampled and deterministic actions are clamped to [-1, 1].
    """

    action_dim: int
    hidden_dims: tuple[int, ...]
    log_std_min: float
    log_std_max: float

    @nn.compact
    def __call__(self, observations: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean = MLP(self.hidden_dims, self.action_dim)(observations)
        log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))
        log_std = jnp.clip(log_std, self.log_std_min, self.log_std_max)
        return mean, jnp.broadcast_to(log_std, mean.shape)


def _actor_module(spec: Spec, config: Config) -> Actor:
    return Actor(spec.action_dim, tuple(config.hidden_dims), config.log_std_min, config.log_std_max)


def init(key: jax.Array, spec: Spec, config: Config) -> State:
    actor_key, critic_key, rng = jax.random.split(key, 3)
    observation = jnp.zeros((1, spec.observation_dim))
    action = jnp.zeros((1, spec.action_dim))
    actor = _actor_module(spec, config)
    critic = CriticEnsemble(config.hidden_dims, num_critics=2)
    critic_params = critic.init(critic_key, observation, action)
    return State(
        actor=TrainState.create(apply_fn=actor.apply, params=actor.init(actor_key, observation), tx=optax.adam(config.actor_learning_rate)),
        critic=TrainState.create(apply_fn=critic.apply, params=critic_params, tx=optax.adam(config.critic_learning_rate)),
        critic_target=critic_params,
        rng=rng,
    )


def sample_actions(actor: TrainState, observations: jax.Array, key: jax.Array) -> jax.Array:
    """a ~ N(mean(s), std), clamped to the action box as CORL's Actor.forward does."""
    mean, log_std = actor.apply_fn(actor.params, observations)
    return jnp.clip(mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape), -1.0, 1.0)


def advantage_weights(advantages: jax.Array, awac_lambda: float, max_weight: float) -> jax.Array:
    """exp(A / lambda), clipped above at `max_weight` (CORL: no normalisation over the batch)."""
    return jnp.minimum(jnp.exp(advantages / awac_lambda), max_weight)


def update(state: State, batch: Batch, config: Config) -> tuple[State, dict[str, jax.Array]]:
    rng, next_key, policy_key = jax.random.split(state.rng, 3)

    # Target: the current policy's action at s' (not the dataset's), evaluated by both target critics.
    next_actions = sample_actions(state.actor, batch.next_observations, next_key)
    next_q = state.critic.apply_fn(state.critic_target, batch.next_observations, next_actions).min(axis=0)
    target_q = jax.lax.stop_gradient(batch.rewards + config.discount * (1.0 - batch.dones) * next_q)

    def critic_loss_fn(params):
        q = state.critic.apply_fn(params, batch.observations, batch.actions)
        return ((q - target_q) ** 2).mean(axis=1).sum(), q

    (critic_loss, q), grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(state.critic.params)
    critic = state.critic.apply_gradients(grads=grads)

    # Advantage under the updated critics; V(s) = min_j Q_j(s, a_pi) with a_pi ~ pi(.|s).
    policy_actions = sample_actions(state.actor, batch.observations, policy_key)
    q_data = critic.apply_fn(critic.params, batch.observations, batch.actions).min(axis=0)
    value = critic.apply_fn(critic.params, batch.observations, policy_actions).min(axis=0)
    advantages = q_data - value
    weights = jax.lax.stop_gradient(advantage_weights(advantages, config.awac_lambda, config.max_weight))

    def actor_loss_fn(params):
        mean, log_std = state.actor.apply_fn(params, batch.observations)
        return -(weights * gaussian_log_prob(mean, log_std, batch.actions)).mean()

    actor_loss, grads = jax.value_and_grad(actor_loss_fn)(state.actor.params)
    actor = state.actor.apply_gradients(grads=grads)
    critic_target = optax.incremental_update(critic.params, state.critic_target, config.tau)

    metrics = {
        "critic_loss": critic_loss,
        "actor_loss": actor_loss,
        "q_mean": q.mean(),
        "q_target_mean": target_q.mean(),
        "advantage_mean": advantages.mean(),
        "weight_mean": weights.mean(),
        "weight_clipped_fraction": (weights >= config.max_weight).mean(),
        "policy_std": jnp.exp(state.actor.apply_fn(state.actor.params, batch.observations[:1])[1]).mean(),
    }
    return State(actor=actor, critic=critic, critic_target=critic_target, rng=rng), metrics


def act(state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    if deterministic:
        return jnp.clip(state.actor.apply_fn(state.actor.params, observations)[0], -1.0, 1.0)
    return sample_actions(state.actor, observations, key)


# Online fine-tuning settings (offrl.train.finetune). AWAC is built for this (Nair et al. 2020,
# Sec. 5: the same updates continue online, offline data kept in the replay buffer), and CORL's
# algorithms/finetune/awac.py changes no hyperparameter online and collects with policy samples
# (Actor.act samples in training mode). CORL appends online transitions to the offline buffer;
# here batches mix 50/50 (the engine's default), like the other fine-tuned algorithms.
FINETUNE = {
    "config": {},
}
