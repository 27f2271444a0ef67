"""RLPD (Ball, Smith, Kostrikov & Levine, 2023, "Efficient Online Reinforcement Learning with
Offline Data").

Online SAC that treats a dataset as prior data, with three changes the paper found sufficient:
symmetric sampling (every batch half offline, half online: the fine-tuning engine's mixed mode),
LayerNorm in the critics, and a large ensemble with a high update-to-data ratio:
    critic (each of N): Q_i(s, a) -> r + gamma * (1 - done) * (min_{j in M} Q'_j(s', a') - alpha * log pi(a'|s'))
                        M = 2 target critics drawn at random per update (REDQ's in-target minimisation)
    actor:              E[alpha * log pi(a|s) - mean_i Q_i(s, a)]        (mean over the whole ensemble)
    temperature:        E[-log_alpha * (log pi(a|s) + target_entropy)],  target_entropy = -action_dim / 2
The engine runs UTD = 20 updates per environment step; as in the reference, the critics update
on every one of them and the actor and temperature once per `actor_update_every` updates (the
last of each group of 20). There is no offline pretraining: `offrl train rlpd` starts from an
untrained agent, acts uniformly at random for 5,000 steps, then learns online with the dataset.

Defaults are the reference's D4RL locomotion settings (ikostrikov/rlpd README and
configs/rlpd_config.py, sac_config.py, td_config.py): 2x256 networks, lr 3e-4, 10 critics,
2 in the target min, LayerNorm critics, entropy backup, init temperature 1.0, batch 256.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training.train_state import TrainState

from offrl.nets import CriticEnsemble, LogScalar, TanhGaussianPolicy
from offrl.types import Batch, Spec

NAME = "rlpd"
DESCRIPTION = "RLPD: online SAC with a LayerNorm critic ensemble, high UTD and symmetric offline/online batches."
PAPER = "Ball, Smith, Kostrikov & Levine 2023, Efficient Online Reinforcement Learning with Offline Data"

# Trained online from scratch with the dataset as prior data (the fine-tuning engine), not offline.
ONLINE = True


@dataclass(frozen=True)
class Config:
    actor_learning_rate: float = 3e-4  # reference td_config: actor_lr
    critic_learning_rate: float = 3e-4  # reference td_config: critic_lr
    temperature_learning_rate: float = 3e-4  # reference sac_config: temp_lr
    hidden_dims: tuple[int, ...] = (256, 256)  # reference td_config (locomotion)
    num_critics: int = 10  # reference rlpd_config: num_qs
    num_target_critics: int = 2  # reference rlpd_config: num_min_qs (random subset in the target min)
    critic_layer_norm: bool = True  # reference rlpd_config: critic_layer_norm
    batch_size: int = 256  # reference flag batch_size (per update, half offline)
    discount: float = 0.99  # reference td_config
    tau: float = 0.005  # reference td_config
    init_temperature: float = 1.0  # reference sac_config
    target_entropy: float | None = None  # None: -action_dim / 2 (reference SACLearner)
    backup_entropy: bool = True  # reference sac_config (locomotion)
    actor_update_every: int = 20  # critic updates per actor/temperature update (reference: once per env step at UTD 20)
    normalize_observations: bool = False  # the reference does not standardise states
    normalize_rewards: bool = False


@struct.dataclass
class State:
    actor: TrainState
    critic: TrainState
    critic_target: dict
    temperature: TrainState
    rng: jax.Array
    step: jax.Array


def init(key: jax.Array, spec: Spec, config: Config) -> State:
    actor_key, critic_key, temperature_key, rng = jax.random.split(key, 4)
    observation = jnp.zeros((1, spec.observation_dim))
    action = jnp.zeros((1, spec.action_dim))
    actor = TanhGaussianPolicy(spec.action_dim, config.hidden_dims)
    critic = CriticEnsemble(config.hidden_dims, num_critics=config.num_critics, layer_norm=config.critic_layer_norm)
    temperature = LogScalar(config.init_temperature)
    critic_params = critic.init(critic_key, observation, action)
    return State(
        actor=TrainState.create(apply_fn=actor.apply, params=actor.init(actor_key, observation), tx=optax.adam(config.actor_learning_rate)),
        critic=TrainState.create(apply_fn=critic.apply, params=critic_params, tx=optax.adam(config.critic_learning_rate)),
        critic_target=critic_params,
        temperature=TrainState.create(apply_fn=temperature.apply, params=temperature.init(temperature_key),
                                      tx=optax.adam(config.temperature_learning_rate)),
        rng=rng,
        step=jnp.zeros((), jnp.int32),
    )


def target_entropy(action_dim: int, config: Config) -> float:
    return -action_dim / 2.0 if config.target_entropy is None else float(config.target_entropy)


def _sample(actor: TrainState, params: dict, observations: jax.Array, key: jax.Array):
    return actor.apply_fn(params, observations, key, method=TanhGaussianPolicy.sample)


def target_subset(key: jax.Array, num_critics: int, num_target_critics: int) -> jax.Array:
    """A 0/1 mask over the ensemble with `num_target_critics` ones at random positions."""
    chosen = jax.random.permutation(key, num_critics)[:num_target_critics]
    return jnp.zeros(num_critics, bool).at[chosen].set(True)


def update(state: State, batch: Batch, config: Config) -> tuple[State, dict[str, jax.Array]]:
    rng, next_key, subset_key, actor_key = jax.random.split(state.rng, 4)
    alpha = jnp.exp(state.temperature.apply_fn(state.temperature.params))

    next_actions, next_log_probs = _sample(state.actor, state.actor.params, batch.next_observations, next_key)
    next_qs = state.critic.apply_fn(state.critic_target, batch.next_observations, next_actions)
    subset = target_subset(subset_key, config.num_critics, config.num_target_critics)
    next_q = jnp.where(subset[:, None], next_qs, jnp.inf).min(axis=0)
    if config.backup_entropy:
        next_q = next_q - alpha * next_log_probs
    target_q = batch.rewards + config.discount * (1.0 - batch.dones) * next_q

    def critic_loss_fn(params):
        q = state.critic.apply_fn(params, batch.observations, batch.actions)
        # Reference: ((qs - target_q) ** 2).mean() over members and batch.
        return ((q - target_q) ** 2).mean(), q

    (critic_loss, q), critic_grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(state.critic.params)
    critic = state.critic.apply_gradients(grads=critic_grads)
    critic_target = optax.incremental_update(critic.params, state.critic_target, config.tau)

    def actor_step(_):
        def actor_loss_fn(params):
            actions, log_probs = _sample(state.actor, params, batch.observations, actor_key)
            q_pi = critic.apply_fn(critic.params, batch.observations, actions).mean(axis=0)
            return (alpha * log_probs - q_pi).mean(), log_probs

        (actor_loss, log_probs), grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(state.actor.params)
        actor = state.actor.apply_gradients(grads=grads)
        entropy = -log_probs.mean()
        goal = target_entropy(batch.actions.shape[-1], config)
        temperature_loss, grads = jax.value_and_grad(
            lambda params: state.temperature.apply_fn(params) * (entropy - goal)
        )(state.temperature.params)
        return actor, state.temperature.apply_gradients(grads=grads), actor_loss, temperature_loss, entropy

    def skip(_):
        nan = jnp.full((), jnp.nan)  # no actor update on this step; the engine averages with nanmean
        return state.actor, state.temperature, nan, nan, nan

    # The actor follows the critics: it updates on the last of every `actor_update_every` updates.
    actor, temperature, actor_loss, temperature_loss, entropy = jax.lax.cond(
        (state.step + 1) % config.actor_update_every == 0, actor_step, skip, None
    )
    new_state = State(actor=actor, critic=critic, critic_target=critic_target, temperature=temperature,
                      rng=rng, step=state.step + 1)
    metrics = {
        "critic_loss": critic_loss,
        "actor_loss": actor_loss,
        "temperature_loss": temperature_loss,
        "alpha": alpha,
        "entropy": entropy,
        "q_mean": q.mean(),
    }
    return new_state, metrics


def act(state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    """tanh(mean) when `deterministic`, else a sample of the squashed Gaussian; in [-1, 1]."""
    if deterministic:
        return state.actor.apply_fn(state.actor.params, observations)
    actions, _ = _sample(state.actor, state.actor.params, observations, key)
    return actions


# Engine settings for the fine-tuning engine (offrl.train.finetune), from the reference README's
# D4RL locomotion command: --utd_ratio=20 --start_training 5000, offline_ratio 0.5.
FINETUNE = {
    "config": {},
    "offline_ratio": 0.5,  # symmetric sampling (paper Sec. 3.1; reference flag offline_ratio)
    "utd": 20,  # reference --utd_ratio=20
    "warmup_steps": 5_000,  # reference --start_training 5000: uniform random actions, no updates
}
