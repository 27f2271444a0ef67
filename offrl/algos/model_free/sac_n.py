"""SAC-N (An, Moon, Kim & Song, 2021, "Uncertainty-Based Offline Reinforcement Learning with
Diversified Q-Ensemble").

SAC with N critics instead of two; the minimum over the ensemble is a pessimistic estimate that
grows more pessimistic where the critics disagree (out of distribution):
    critic: Q_i(s, a) -> r + gamma * (1 - done) * (min_j Q'_j(s', a') - alpha * log pi(a'|s'))
    actor:  E[alpha * log pi(a|s) - min_j Q_j(s, a)],  a ~ pi(.|s)
The N critics are one vmapped `CriticEnsemble`. Defaults are CORL's `sac_n.py` for D4RL gym
(halfcheetah: N = 10; the paper's Table 5 lists N per task), three hidden layers of 256, Adam 3e-4.
`ensemble_sac_update` is shared with EDAC, which adds a critic regulariser; it updates temperature,
then actor, then critic, in the order of CORL's sac_n.py (see its docstring).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training.train_state import TrainState

from offrl.nets import CriticEnsemble, LogScalar, TanhGaussianPolicy
from offrl.types import Batch, Spec

NAME = "sac_n"
DESCRIPTION = "SAC-N: soft actor-critic with the minimum over a large vmapped Q-ensemble."
PAPER = "An, Moon, Kim & Song 2021, Uncertainty-Based Offline RL with Diversified Q-Ensemble"


@dataclass(frozen=True)
class Config:
    actor_learning_rate: float = 3e-4  # CORL sac_n
    critic_learning_rate: float = 3e-4
    temperature_learning_rate: float = 3e-4
    hidden_dims: tuple[int, ...] = (256, 256, 256)  # CORL sac_n: 3 hidden layers of 256
    num_critics: int = 10  # CORL sac_n / paper, halfcheetah
    batch_size: int = 256
    discount: float = 0.99
    tau: float = 5e-3
    init_temperature: float = 1.0
    target_entropy: float | None = None  # None: -action_dim
    normalize_observations: bool = False  # CORL sac_n does not normalise states
    normalize_rewards: bool = False


@struct.dataclass
class State:
    actor: TrainState
    critic: TrainState
    critic_target: dict
    temperature: TrainState
    rng: jax.Array


def init(key: jax.Array, spec: Spec, config: Config) -> State:
    actor_key, critic_key, rng = jax.random.split(key, 3)
    observation = jnp.zeros((1, spec.observation_dim))
    action = jnp.zeros((1, spec.action_dim))
    actor = TanhGaussianPolicy(spec.action_dim, config.hidden_dims)
    critic = CriticEnsemble(config.hidden_dims, num_critics=config.num_critics)
    critic_params = critic.init(critic_key, observation, action)
    temperature = LogScalar(config.init_temperature)
    return State(
        actor=TrainState.create(apply_fn=actor.apply, params=actor.init(actor_key, observation), tx=optax.adam(config.actor_learning_rate)),
        critic=TrainState.create(apply_fn=critic.apply, params=critic_params, tx=optax.adam(config.critic_learning_rate)),
        critic_target=critic_params,
        temperature=TrainState.create(apply_fn=temperature.apply, params=temperature.init(rng), tx=optax.adam(config.temperature_learning_rate)),
        rng=rng,
    )


def _sample(actor: TrainState, params: dict, observations: jax.Array, key: jax.Array):
    return actor.apply_fn(params, observations, key, method=TanhGaussianPolicy.sample)


CriticRegularizer = Callable[[dict, Batch, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]


def ensemble_sac_update(
    state: State, batch: Batch, config, critic_regularizer: CriticRegularizer | None = None
) -> tuple[State, dict[str, jax.Array]]:
    """One SAC-N update; `critic_regularizer(params, batch, key) -> (loss, metrics)` is added to the critic loss.

    Order as in CORL's sac_n.py / edac.py `update` (which follows the EDAC authors' trainer):
    temperature, then actor (against the critic before this step's critic update, with the new
    alpha), then critic (its target from the updated actor and the new alpha), then the target.
    """
    rng, alpha_key, actor_key, next_key, regularizer_key = jax.random.split(state.rng, 5)
    goal = -float(batch.actions.shape[-1]) if config.target_entropy is None else float(config.target_entropy)

    # 1. Temperature, from a fresh sample of the current policy (CORL: _alpha_loss under no_grad).
    _, alpha_log_probs = _sample(state.actor, state.actor.params, batch.observations, alpha_key)
    alpha_entropy = -jax.lax.stop_gradient(alpha_log_probs).mean()
    temperature_grads = jax.grad(lambda params: state.temperature.apply_fn(params) * (alpha_entropy - goal))(
        state.temperature.params
    )
    temperature = state.temperature.apply_gradients(grads=temperature_grads)
    alpha = jnp.exp(temperature.apply_fn(temperature.params))

    # 2. Actor, against the critic as it was before this update.
    def actor_loss_fn(params):
        actions, log_probs = _sample(state.actor, params, batch.observations, actor_key)
        q_pi = state.critic.apply_fn(state.critic.params, batch.observations, actions).min(axis=0)
        return (alpha * log_probs - q_pi).mean(), log_probs

    (actor_loss, log_probs), actor_grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(state.actor.params)
    actor = state.actor.apply_gradients(grads=actor_grads)

    # 3. Critic, with next actions from the updated actor.
    next_actions, next_log_probs = _sample(actor, actor.params, batch.next_observations, next_key)
    next_q = state.critic.apply_fn(state.critic_target, batch.next_observations, next_actions).min(axis=0)
    target_q = batch.rewards + config.discount * (1.0 - batch.dones) * (next_q - alpha * next_log_probs)

    def critic_loss_fn(params):
        q = state.critic.apply_fn(params, batch.observations, batch.actions)
        loss = ((q - target_q) ** 2).mean(axis=1).sum()
        extra, extra_metrics = (0.0, {}) if critic_regularizer is None else critic_regularizer(params, batch, regularizer_key)
        return loss + extra, (q, extra_metrics)

    (critic_loss, (q, extra_metrics)), critic_grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(state.critic.params)
    critic = state.critic.apply_gradients(grads=critic_grads)
    critic_target = optax.incremental_update(critic.params, state.critic_target, config.tau)

    new_state = State(actor=actor, critic=critic, critic_target=critic_target, temperature=temperature, rng=rng)
    metrics = {
        "critic_loss": critic_loss,
        "actor_loss": actor_loss,
        "alpha": alpha,
        "entropy": -jax.lax.stop_gradient(log_probs).mean(),
        "q_mean": q.mean(),
        "q_std": q.std(axis=0).mean(),  # ensemble disagreement on dataset actions
        **extra_metrics,
    }
    return new_state, metrics


def update(state: State, batch: Batch, config: Config) -> tuple[State, dict[str, jax.Array]]:
    return ensemble_sac_update(state, batch, config)


def act(state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    if deterministic:
        return state.actor.apply_fn(state.actor.params, observations)
    actions, _ = _sample(state.actor, state.actor.params, observations, key)
    return actions
