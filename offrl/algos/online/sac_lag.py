"""SAC-Lag: Soft Actor-Critic with a cost critic and a Lagrange multiplier (constrained online RL).

The behaviour agent of offrl's safe dataset recipe (offrl/suites/safe_recipe.py), as DSRL's data
came from Lagrangian agents trained at several cost limits. SAC (offrl/algos/online/sac.py, whose
steps this module calls) plus:
    cost critic: Q_c(s, a) -> c + gamma * (1 - done) * Q_c'(s', a'),  a' ~ pi(.|s') (no entropy term)
    actor:       E[alpha * log pi(a|s) - min_i Q_i(s, a) + lambda * Q_c(s, a)]
    multiplier:  lambda = softplus(nu), gradient ascent on lambda * (E[Q_c(s, a)] - d),  a ~ pi(.|s)
    limit:       d = kappa * (1 - gamma^L) / ((1 - gamma) * L)   (kappa: cost limit per episode,
                 L: episode length; the discounted cost of paying kappa / L on every step)
so lambda rises while the policy's expected discounted cost is above d and decays towards 0 below it.

The update follows WCSAC's SAC-Lagrangian (AlgTUDelft/WCSAC, wcsac/sac/saclag.py, adapted from
OpenAI's safety-starter-agents): one cost critic sharing the reward critics' discount and target
smoothing, softplus multiplier, its loss beta * (cost_constraint - qc), and the same per-step
limit. Differences, said plainly: SAC's part is offrl's SAC unchanged (paper Table 1 defaults; each
step uses the critics just updated, where WCSAC computes all losses before any update), and the
multiplier's ascent reads Q_c at the policy's actions (OSRL's BCQ-L and BEAR-L do; WCSAC reads it at
the replay actions). The engine puts each transition's cost in the batch (`EXTRA_FIELDS`); an env
without `info["cost"]` is refused by the online engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training.train_state import TrainState

from offrl.algos.online import sac
from offrl.errors import ConfigError
from offrl.nets import CriticEnsemble
from offrl.types import Batch, Spec

NAME = "sac_lag"
DESCRIPTION = "SAC-Lag: SAC with a cost critic and a Lagrange multiplier that keeps the episode cost under a limit."
PAPER = "Ha et al. 2020, Learning to Walk in the Real World with Minimal Human Effort (SAC-Lagrangian); Yang et al. 2021 (WCSAC)"
EXTRA_FIELDS = ("costs",)


@dataclass(frozen=True)
class Config(sac.Config):
    cost_limit: float = 25.0  # kappa, cost per episode (omnisafe configs/off-policy/SACLag.yaml cost_limit; FSRL sacl_cfg.py MujocoBaseCfg)
    max_episode_steps: int = 1000  # L in the per-step limit (WCSAC saclag.py max_ep_len)
    multiplier_learning_rate: float = 1e-3  # Adam on softplus's argument (WCSAC saclag.py: lr 1e-3 x lr_s 1)
    initial_multiplier: float = math.log(2.0)  # softplus(0) (WCSAC saclag.py soft_beta initializer 0.0)


@struct.dataclass
class State:
    agent: sac.State  # actor, reward critics, temperature, rng
    cost_critic: TrainState
    cost_critic_target: dict
    multiplier: TrainState  # params {"nu": the softplus argument}; lambda = softplus(nu)


def check_config(config: Config) -> None:
    if not (math.isfinite(config.cost_limit) and config.cost_limit >= 0):
        raise ConfigError(f"--cost-limit is {config.cost_limit}; expected a non-negative cost per episode.")
    if config.max_episode_steps < 1:
        raise ConfigError(f"--max-episode-steps is {config.max_episode_steps}; expected a positive integer.")
    if not (math.isfinite(config.initial_multiplier) and config.initial_multiplier > 0):
        raise ConfigError(f"--initial-multiplier is {config.initial_multiplier}; expected a positive number.")


def cost_q_limit(config: Config) -> float:
    """d = kappa * (1 - gamma^L) / ((1 - gamma) L): the discounted cost of kappa / L per step."""
    gamma, steps = config.discount, config.max_episode_steps
    horizon = float(steps) if gamma == 1.0 else (1.0 - gamma**steps) / (1.0 - gamma)
    return config.cost_limit * horizon / steps


def multiplier_value(multiplier: TrainState) -> jax.Array:
    return jax.nn.softplus(multiplier.params["nu"])


def init(key: jax.Array, spec: Spec, config: Config) -> State:
    check_config(config)
    agent_key, cost_key = jax.random.split(key)
    cost_critic = CriticEnsemble(config.hidden_dims, num_critics=1)
    cost_params = cost_critic.init(cost_key, jnp.zeros((1, spec.observation_dim)), jnp.zeros((1, spec.action_dim)))
    # The inverse of softplus, so that lambda starts at `initial_multiplier`; float32, not weak-typed (see sac.Temperature).
    nu = jnp.asarray(math.log(math.expm1(config.initial_multiplier)), jnp.float32)
    return State(
        agent=sac.init(agent_key, spec, config),
        cost_critic=TrainState.create(apply_fn=cost_critic.apply, params=cost_params,
                                      tx=optax.adam(config.critic_learning_rate)),
        cost_critic_target=cost_params,
        multiplier=TrainState.create(apply_fn=None, params={"nu": nu}, tx=optax.adam(config.multiplier_learning_rate)),
    )


def cost_target(costs: jax.Array, dones: jax.Array, next_cost_q: jax.Array, discount: float) -> jax.Array:
    """c + gamma * (1 - done) * Q_c'(s', a'): no bootstrap after a terminal, none of the entropy bonus."""
    return costs + discount * (1.0 - dones) * next_cost_q


def multiplier_step(multiplier: TrainState, cost_q: jax.Array, limit: float) -> tuple[TrainState, jax.Array]:
    """One ascent step on lambda * (cost_q - limit): lambda rises above the limit, decays below it."""

    def loss_fn(params):
        return -jax.nn.softplus(params["nu"]) * (cost_q - limit)

    loss, grad = jax.value_and_grad(loss_fn)(multiplier.params)
    return multiplier.apply_gradients(grads=grad), loss


def update(state: State, batch: Batch, config: Config) -> tuple[State, dict[str, jax.Array]]:
    agent = state.agent
    rng, next_key, actor_key = jax.random.split(agent.rng, 3)
    alpha = sac.temperature_value(agent)
    next_actions, next_log_probs = sac.sample_actions(agent.actor, agent.actor.params, batch.next_observations, next_key)
    critic, critic_target, critic_loss, q = sac.critic_step(agent, batch, config, alpha, next_actions, next_log_probs)

    cost_apply = state.cost_critic.apply_fn
    next_cost_q = cost_apply(state.cost_critic_target, batch.next_observations, next_actions)[0]
    target_cost_q = cost_target(batch.costs, batch.dones, next_cost_q, config.discount)

    def cost_loss_fn(params):
        cost_q = cost_apply(params, batch.observations, batch.actions)[0]
        return 0.5 * ((cost_q - target_cost_q) ** 2).mean(), cost_q

    (cost_loss, cost_q), cost_grads = jax.value_and_grad(cost_loss_fn, has_aux=True)(state.cost_critic.params)
    cost_critic = state.cost_critic.apply_gradients(grads=cost_grads)
    cost_critic_target = optax.incremental_update(cost_critic.params, state.cost_critic_target, config.tau)

    multiplier = multiplier_value(state.multiplier)

    def penalty(actions):
        return multiplier * cost_apply(cost_critic.params, batch.observations, actions)[0]

    actor, actor_loss, log_probs, actions = sac.actor_step(agent.actor, critic, batch.observations, alpha, actor_key, penalty)
    policy_cost_q = cost_apply(cost_critic.params, batch.observations, jax.lax.stop_gradient(actions))[0].mean()
    limit = cost_q_limit(config)
    multiplier_state, multiplier_loss = multiplier_step(state.multiplier, policy_cost_q, limit)
    temperature, temperature_loss, entropy = sac.temperature_step(
        agent.temperature, log_probs, sac.target_entropy(batch.actions.shape[-1], config))

    new_agent = sac.State(actor=actor, critic=critic, critic_target=critic_target, temperature=temperature,
                          rng=rng, step=agent.step + 1)
    new_state = State(agent=new_agent, cost_critic=cost_critic, cost_critic_target=cost_critic_target,
                      multiplier=multiplier_state)
    metrics = {
        "critic_loss": critic_loss,
        "cost_critic_loss": cost_loss,
        "actor_loss": actor_loss,
        "temperature_loss": temperature_loss,
        "multiplier_loss": multiplier_loss,
        "alpha": alpha,
        "multiplier": multiplier,
        "entropy": entropy,
        "q_mean": q.mean(),
        "cost_q_mean": cost_q.mean(),
        "policy_cost_q": policy_cost_q,
        "cost_q_limit": jnp.float32(limit),
    }
    return new_state, metrics


def act(state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    """SAC's acting: tanh(mean) when `deterministic`, else a sample of the squashed Gaussian."""
    return sac.act(state.agent, observations, key, deterministic)
