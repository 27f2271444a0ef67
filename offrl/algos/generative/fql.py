"""Flow Q-Learning (Park, Li & Levine, 2025, "Flow Q-Learning").

A flow-matching behaviour policy v(s, x_t, t) is trained by BC alone. A separate one-step policy
mu(s, z) maps noise straight to an action; it is distilled from the flow policy's K-step Euler
samples from the same noise and pushed up the critic:
    actor_loss = flow_bc_loss + alpha * ||mu(s, z) - flow(s, z)||^2 - lambda * Q(s, mu(s, z))
with lambda = 1 / mean|Q| when `normalize_q_loss` (the FQL README's advice for new tasks).
The critic bootstraps from the one-step policy, which is also what acts (a fresh z per action).
Defaults: seohongpark/fql agents/fql.py get_config, except where commented.
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training.train_state import TrainState

from offrl.nets import MLP, CriticEnsemble
from offrl.nets.denoiser import ConditionalDenoiser
from offrl.nets.flow import check_steps, euler_sample, flow_matching_loss
from offrl.types import Batch, Spec

NAME = "fql"
DESCRIPTION = "Flow Q-Learning: a one-step policy distilled from a flow BC policy and pushed up the critic."
PAPER = "Park, Li & Levine 2025, Flow Q-Learning"


@dataclass(frozen=True)
class Config:
    actor_learning_rate: float = 3e-4  # fql.py lr (one rate for every network)
    critic_learning_rate: float = 3e-4
    hidden_dims: tuple[int, ...] = (512, 512, 512, 512)  # fql.py actor_hidden_dims = value_hidden_dims
    batch_size: int = 256
    discount: float = 0.99
    tau: float = 0.005
    alpha: float = 10.0  # distillation coefficient; fql.py default, tuned per task (paper Table 6)
    flow_steps: int = 10  # Euler steps of the flow policy (fql.py flow_steps)
    q_aggregation: str = "mean"  # fql.py q_agg: mean of the two critics (min: clipped double Q)
    # README "Tips for hyperparameter tuning": normalize_q_loss=True makes alpha invariant to the
    # Q scale, "highly recommended" for new environments (the paper's runs had it off).
    normalize_q_loss: bool = True
    critic_layer_norm: bool = True  # fql.py layer_norm (value networks); actor_layer_norm False
    normalize_observations: bool = False  # fql.py feeds raw observations
    normalize_rewards: bool = False

    def __post_init__(self):
        check_steps(self.flow_steps, "--flow-steps")


@struct.dataclass
class State:
    flow: TrainState  # velocity field of the BC flow policy
    one_step: TrainState  # mu(s, z)
    critic: TrainState
    critic_target: dict
    rng: jax.Array
    action_dim: int = struct.field(pytree_node=False, default=1)


class OneStepPolicy(nn.Module):
    """mu(s, z): noise to action in one pass (fql.py's actor_onestep_flow, a time-free field)."""

    action_dim: int
    hidden_dims: tuple[int, ...]

    @nn.compact
    def __call__(self, observations: jax.Array, noise: jax.Array) -> jax.Array:
        return MLP(self.hidden_dims, self.action_dim, activation=nn.gelu)(jnp.concatenate([observations, noise], -1))


def init(key: jax.Array, spec: Spec, config: Config) -> State:
    flow_key, one_step_key, critic_key, rng = jax.random.split(key, 4)
    observation = jnp.zeros((1, spec.observation_dim))
    action = jnp.zeros((1, spec.action_dim))
    flow = ConditionalDenoiser(spec.action_dim, config.hidden_dims)
    one_step = OneStepPolicy(spec.action_dim, config.hidden_dims)
    critic = CriticEnsemble(config.hidden_dims, num_critics=2, layer_norm=config.critic_layer_norm)
    critic_params = critic.init(critic_key, observation, action)
    actor_optimizer = optax.adam(config.actor_learning_rate)
    return State(
        flow=TrainState.create(apply_fn=flow.apply, params=flow.init(flow_key, observation, action, jnp.zeros((1,))), tx=actor_optimizer),
        one_step=TrainState.create(apply_fn=one_step.apply, params=one_step.init(one_step_key, observation, action), tx=actor_optimizer),
        critic=TrainState.create(apply_fn=critic.apply, params=critic_params, tx=optax.adam(config.critic_learning_rate)),
        critic_target=critic_params,
        rng=rng,
        action_dim=spec.action_dim,
    )


def aggregate(qs: jax.Array, how: str) -> jax.Array:
    return qs.min(axis=0) if how == "min" else qs.mean(axis=0)


def flow_actions(state: State, observations: jax.Array, noise: jax.Array, steps: int) -> jax.Array:
    """The BC flow policy's actions from `noise` (K Euler steps, clipped to [-1, 1])."""
    return euler_sample(state.flow.apply_fn, state.flow.params, observations, noise, steps)


def update(state: State, batch: Batch, config: Config) -> tuple[State, dict[str, jax.Array]]:
    rng, next_key, flow_key, noise_key = jax.random.split(state.rng, 4)
    action_dim = batch.actions.shape[-1]

    next_noise = jax.random.normal(next_key, batch.actions.shape)
    next_actions = jnp.clip(state.one_step.apply_fn(state.one_step.params, batch.next_observations, next_noise), -1.0, 1.0)
    next_q = aggregate(state.critic.apply_fn(state.critic_target, batch.next_observations, next_actions), config.q_aggregation)
    target_q = batch.rewards + config.discount * (1.0 - batch.dones) * next_q

    def critic_loss_fn(params):
        q = state.critic.apply_fn(params, batch.observations, batch.actions)
        return ((q - target_q) ** 2).mean(), q

    (critic_loss, q), grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(state.critic.params)
    critic = state.critic.apply_gradients(grads=grads)
    critic_target = optax.incremental_update(critic.params, state.critic_target, config.tau)

    flow_loss, grads = jax.value_and_grad(
        lambda params: flow_matching_loss(state.flow.apply_fn, params, batch.observations, batch.actions, flow_key)
    )(state.flow.params)
    flow = state.flow.apply_gradients(grads=grads)

    # The distillation target comes from the flow policy before this step's update (fql.py
    # computes every loss from the same parameters), without gradient.
    noise = jax.random.normal(noise_key, (batch.actions.shape[0], action_dim))
    target_actions = jax.lax.stop_gradient(flow_actions(state, batch.observations, noise, config.flow_steps))

    def one_step_loss_fn(params):
        actions = state.one_step.apply_fn(params, batch.observations, noise)
        distill_loss = ((actions - target_actions) ** 2).mean()
        q_pi = aggregate(critic.apply_fn(state.critic.params, batch.observations, jnp.clip(actions, -1.0, 1.0)), "mean")
        q_loss = -q_pi.mean()
        if config.normalize_q_loss:
            q_loss = q_loss * jax.lax.stop_gradient(1.0 / jnp.abs(q_pi).mean())
        return config.alpha * distill_loss + q_loss, (distill_loss, q_loss)

    (one_step_loss, (distill_loss, q_loss)), grads = jax.value_and_grad(one_step_loss_fn, has_aux=True)(state.one_step.params)
    one_step = state.one_step.apply_gradients(grads=grads)

    new_state = state.replace(flow=flow, one_step=one_step, critic=critic, critic_target=critic_target, rng=rng)
    metrics = {
        "critic_loss": critic_loss, "flow_loss": flow_loss, "distill_loss": distill_loss, "q_loss": q_loss,
        "actor_loss": flow_loss + one_step_loss, "q_mean": q.mean(),
    }
    return new_state, metrics


def act(state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    """FQL's sampling rule: the one-step policy from fresh noise (fql.py sample_actions); the
    reference samples noise at evaluation too, so `deterministic` changes nothing."""
    noise = jax.random.normal(key, (*observations.shape[:-1], state.action_dim))
    return jnp.clip(state.one_step.apply_fn(state.one_step.params, observations, noise), -1.0, 1.0)
