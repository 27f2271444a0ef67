"""BCQ-Lag: batch-constrained Q-learning with a cost critic and a PID Lagrange multiplier (OSRL's BCQL;
Fujimoto, Meger & Precup 2019 for BCQ; Stooke, Achiam & Abbeel 2020 for the PID Lagrangian).

BCQ acts only near the data: a conditional VAE models the behaviour policy, and a perturbation
actor moves a VAE sample by at most phi. BCQ-Lag adds a cost critic Q_c and penalises the actor
while Q_c is above a per-step limit, with a multiplier set by a PID controller:
    actor:  min_i Q_r,i(s, a) - lambda * (min_i Q_c,i(s, a) - qc_limit),  a = xi(s, VAE sample)
    limit:  qc_limit = kappa * (1 - gamma^T) / (1 - gamma) / T   (kappa: target cost per episode,
            T: episode length; the discounted cost of paying kappa / T on every step)
    lambda: relu(KP relu(e) + KI I + KD relu(e - e_prev)),  e = mean(Q_c) - qc_limit,  I = relu(I + e)
Each critic is OSRL's `EnsembleDoubleQCritic`: two groups of `num_q` networks; a group's value is
its minimum, the target mixes the groups as lmbda * min + (1 - lmbda) * max and takes the best of
`num_target_samples` perturbed VAE actions at s' (the cost critic, like OSRL's, takes the largest).
Both critics are one vmapped ensemble here (the first 2 num_q networks reward, the other 2 num_qc
cost; offrl/algos/safe/vae_critics.py says why).

Defaults: OSRL `examples/configs/bcql_configs.py` (BCQLTrainConfig) and `osrl/algorithms/bcql.py`,
`osrl/common/net.py`. Differences, said plainly: targets use (1 - terminal) for both critics, where
OSRL's reward critic stops at terminals and timeouts alike (its dataset's `done`) and its cost
critic never stops; both critics' targets share one set of sampled next actions. Acting is OSRL's
(one VAE sample, perturbed, and no selection); `act_samples` > 1 draws that many and keeps the one
with the best Lagrangian, reward Q - lambda * cost Q (BCQ's sample-and-select, sfujim/BCQ).

The limit is the value at an episode's first state of paying kappa / T on every step, but OSRL's
PID compares it with mean Q_c over all the batch's states. Where the cost is paid early in episodes
(a swing-up, a start-up) that mean stays far below the first states' Q_c, and lambda never rises
(docs/safe-rl.md). `multiplier_states="initial"` has the PID read Q_c at the episodes' first states
instead (the engine's `initial_state_weights`, 1/p on first rows, as COptiDICE's nu term); the
actor's penalty still covers every state.

Engine hooks: `EXTRA_FIELDS = ("costs",)`, and `extra_fields(config)` adds "initial_state_weights" under
`multiplier_states="initial"`; they put each transition's cost and
first-row weight in the batch (the weights exist offline only); data without costs is refused.
`pid_gains=(0, 0, 0)` freezes lambda at 0 (BCQ that ignores costs).
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training.train_state import TrainState

from offrl.algos.safe.vae_critics import (
    behaviour_vae, bellman_errors, cost_q_limit, reward_and_cost_critics, vae_latent_dim, vae_step,
)
from offrl.errors import ConfigError
from offrl.nets import ConditionalVAE, PerturbationActor
from offrl.types import Batch, Spec

NAME = "bcq_lag"
DESCRIPTION = "BCQ-Lag: BCQ (VAE behaviour model + perturbation actor) with a cost critic and a PID Lagrange multiplier."
PAPER = "Liu et al. 2023, Datasets and Benchmarks for Offline Safe Reinforcement Learning (OSRL's BCQ-Lag)"
EXTRA_FIELDS = ("costs",)


def extra_fields(config) -> tuple[str, ...]:
    """The engine's per-row fields under `config`: the first-state weights only when the PID reads
    Q_c at first states, so OSRL's default mode stays open to fine-tuning and weighted samplers."""
    return EXTRA_FIELDS + (("initial_state_weights",) if config.multiplier_states == "initial" else ())
MULTIPLIER_STATES = ("batch", "initial")
LATENT_CLIP = 0.5  # prior samples z ~ N(0, I) clipped to [-0.5, 0.5] (osrl/common/net.py VAE.decode, as sfujim/BCQ)


@dataclass(frozen=True)
class Config:
    actor_learning_rate: float = 1e-3  # OSRL examples/configs/bcql_configs.py actor_lr
    critic_learning_rate: float = 1e-3  # OSRL bcql_configs.py critic_lr (reward and cost critics)
    vae_learning_rate: float = 1e-3  # OSRL bcql_configs.py vae_lr
    hidden_dims: tuple[int, ...] = (256, 256)  # actor and critics (OSRL bcql_configs.py a_hidden_sizes, c_hidden_sizes)
    vae_hidden_dims: tuple[int, ...] = (400, 400)  # OSRL bcql_configs.py vae_hidden_sizes 400 (two layers each side, net.py VAE)
    vae_latent_dim: int | None = None  # None: 2 * action_dim (osrl/algorithms/bcql.py latent_dim)
    beta: float = 0.5  # KL weight of the VAE loss (OSRL bcql_configs.py)
    phi: float = 0.05  # largest perturbation per action dimension (OSRL bcql_configs.py)
    lmbda: float = 0.75  # target mix: lmbda * min + (1 - lmbda) * max of the two groups (OSRL bcql_configs.py)
    num_q: int = 2  # reward networks per group, 2 groups (OSRL bcql_configs.py num_q)
    num_qc: int = 2  # cost networks per group, 2 groups (OSRL bcql_configs.py num_qc)
    num_target_samples: int = 10  # VAE actions per s' in the targets (OSRL bcql_configs.py sample_action_num)
    act_samples: int = 1  # candidates per acting step; 1 is OSRL's BCQL.act (no selection)
    pid_gains: tuple[float, ...] = (0.1, 0.003, 0.001)  # KP, KI, KD (OSRL bcql_configs.py PID)
    multiplier_states: str = "batch"  # PID reads mean Q_c on: "batch" states (OSRL bcql.py actor_loss); "initial": first states
    target_cost: float = 10.0  # kappa: cost per episode (OSRL bcql_configs.py cost_limit)
    max_episode_steps: int = 300  # T in the per-step limit (OSRL bcql_configs.py episode_len; per task there)
    batch_size: int = 512  # OSRL bcql_configs.py
    discount: float = 0.99  # OSRL bcql_configs.py gamma
    tau: float = 0.005  # OSRL bcql_configs.py
    reward_scale: float = 0.1  # rewards are multiplied by this (OSRL bcql_configs.py reward_scale; cost_scale 1)
    normalize_observations: bool = False  # OSRL's TransitionDataset feeds raw states
    normalize_rewards: bool = False  # reward_scale instead


@struct.dataclass
class State:
    vae: TrainState
    actor: TrainState
    actor_target: dict
    critic: TrainState  # reward networks first, then cost networks
    critic_target: dict
    multiplier: jax.Array  # lambda from the last actor update (acting with act_samples > 1 reads it)
    error_integral: jax.Array  # the PID controller's I
    previous_error: jax.Array  # the PID controller's e at the last update
    rng: jax.Array
    latent_dim: int = struct.field(pytree_node=False, default=2)
    act_samples: int = struct.field(pytree_node=False, default=1)
    num_reward_networks: int = struct.field(pytree_node=False, default=4)  # 2 num_q


def check_config(config: Config) -> None:
    if len(config.pid_gains) != 3 or any(gain < 0 for gain in config.pid_gains):
        raise ConfigError(f"--pid-gains is {list(config.pid_gains)}; expected three non-negative numbers KP KI KD.")
    for name in ("num_q", "num_qc", "num_target_samples", "act_samples", "max_episode_steps"):
        if getattr(config, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} is {getattr(config, name)}; expected a positive integer.")
    if config.multiplier_states not in MULTIPLIER_STATES:
        raise ConfigError(f"--multiplier-states is {config.multiplier_states!r}; expected one of: {', '.join(MULTIPLIER_STATES)}.")
    if not 0.0 <= config.lmbda <= 1.0:
        raise ConfigError(f"--lmbda is {config.lmbda}; expected a value in [0, 1].")


def pid_multiplier(error, error_integral, previous_error, gains):
    """One step of OSRL's LagrangianPIDController.control: (lambda, new integral), both >= 0."""
    kp, ki, kd = gains
    error_integral = jax.nn.relu(error_integral + error)
    multiplier = jax.nn.relu(kp * jax.nn.relu(error) + ki * error_integral + kd * jax.nn.relu(error - previous_error))
    return multiplier, error_integral


def init(key: jax.Array, spec: Spec, config: Config) -> State:
    check_config(config)
    vae_key, actor_key, critic_key, rng = jax.random.split(key, 4)
    # OSRL's perturbation actor has tanh hidden layers (bcql.py builds it with nn.Tanh); its critics ReLU.
    actor = PerturbationActor(spec.action_dim, config.hidden_dims, config.phi, activation=nn.tanh)
    actor_params = actor.init(actor_key, jnp.zeros((1, spec.observation_dim)), jnp.zeros((1, spec.action_dim)))
    critic, critic_target = reward_and_cost_critics(critic_key, spec, config.hidden_dims, 2 * config.num_q,
                                                    2 * config.num_qc, config.critic_learning_rate)
    zero = jnp.zeros((), jnp.float32)
    return State(
        vae=behaviour_vae(vae_key, spec, config),
        actor=TrainState.create(apply_fn=actor.apply, params=actor_params, tx=optax.adam(config.actor_learning_rate)),
        actor_target=actor_params, critic=critic, critic_target=critic_target,
        multiplier=zero, error_integral=zero, previous_error=zero, rng=rng,
        latent_dim=vae_latent_dim(spec, config), act_samples=config.act_samples,
        num_reward_networks=2 * config.num_q,
    )


def behaviour_samples(state: State, vae_params: dict, observations: jax.Array, key: jax.Array) -> jax.Array:
    """Decoded VAE actions at `observations` from prior latents clipped to +-LATENT_CLIP."""
    latents = jnp.clip(jax.random.normal(key, (*observations.shape[:-1], state.latent_dim)), -LATENT_CLIP, LATENT_CLIP)
    return state.vae.apply_fn(vae_params, observations, latents, method=ConditionalVAE.decode)


def reward_and_cost_values(state: State, params: dict, observations: jax.Array, actions: jax.Array):
    """Each critic's (2, batch) group values: a group's minimum over its networks (OSRL
    EnsembleDoubleQCritic.predict), reward critic first."""
    values = state.critic.apply_fn(params, observations, actions)

    def groups(members):
        return members.reshape(2, -1, members.shape[-1]).min(axis=1)

    return groups(values[:state.num_reward_networks]), groups(values[state.num_reward_networks:])


def _critic_targets(state: State, batch: Batch, next_observations, next_actions, config: Config):
    def target(groups, signal):
        mixed = config.lmbda * groups.min(axis=0) + (1.0 - config.lmbda) * groups.max(axis=0)
        next_value = mixed.reshape(batch.rewards.shape[0], config.num_target_samples).max(axis=1)
        return signal + config.discount * (1.0 - batch.dones) * next_value

    reward_groups, cost_groups = reward_and_cost_values(state, state.critic_target, next_observations, next_actions)
    return target(reward_groups, batch.rewards * config.reward_scale), target(cost_groups, batch.costs)


def update(state: State, batch: Batch, config: Config) -> tuple[State, dict[str, jax.Array]]:
    rng, vae_key, next_key, actor_key = jax.random.split(state.rng, 4)

    vae, vae_loss = vae_step(state.vae, batch.observations, batch.actions, vae_key, config.beta)
    state = state.replace(vae=vae)

    # Targets: num_target_samples perturbed VAE actions per s' (the target actor on the new VAE's samples).
    next_observations = jnp.repeat(batch.next_observations, config.num_target_samples, axis=0)
    candidates = behaviour_samples(state, vae.params, next_observations, next_key)
    next_actions = state.actor.apply_fn(state.actor_target, next_observations, candidates)
    reward_target, cost_target = _critic_targets(state, batch, next_observations, next_actions, config)

    def critic_loss_fn(params):
        values = state.critic.apply_fn(params, batch.observations, batch.actions)
        reward_loss, cost_loss = bellman_errors(values, reward_target, cost_target, state.num_reward_networks)
        return reward_loss + cost_loss, (reward_loss, cost_loss)

    (critic_loss, (reward_critic_loss, cost_critic_loss)), critic_grads = jax.value_and_grad(
        critic_loss_fn, has_aux=True)(state.critic.params)
    critic = state.critic.apply_gradients(grads=critic_grads)
    state = state.replace(critic=critic)

    samples = behaviour_samples(state, vae.params, batch.observations, actor_key)
    limit = cost_q_limit(config)

    def policy_values(params):
        actions = state.actor.apply_fn(params, batch.observations, samples)
        reward_groups, cost_groups = reward_and_cost_values(state, critic.params, batch.observations, actions)
        return reward_groups.min(axis=0), cost_groups.min(axis=0)

    # lambda comes from the cost Q at the current actor's actions (OSRL computes it inside actor_loss, detached).
    policy_cost_q = policy_values(state.actor.params)[1]
    if config.multiplier_states == "initial":  # 1/p on first rows: the mean estimates E[Q_c(s0, pi(s0))]
        error = (batch.initial_state_weights * policy_cost_q).mean() - limit
    else:
        error = policy_cost_q.mean() - limit
    multiplier, error_integral = pid_multiplier(error, state.error_integral, state.previous_error, config.pid_gains)

    def actor_loss_fn(params):
        q, cost_q = policy_values(params)
        penalty = (multiplier * (cost_q - limit)).mean()
        return -q.mean() + penalty, (q, cost_q, penalty)

    (actor_loss, (q, cost_q, penalty)), actor_grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(state.actor.params)
    actor = state.actor.apply_gradients(grads=actor_grads)

    new_state = state.replace(
        actor=actor, actor_target=optax.incremental_update(actor.params, state.actor_target, config.tau),
        critic_target=optax.incremental_update(critic.params, state.critic_target, config.tau),
        multiplier=multiplier, error_integral=error_integral, previous_error=error, rng=rng,
    )
    metrics = {
        "vae_loss": vae_loss,
        "critic_loss": critic_loss,  # both critics' Bellman errors (tests/test_critic_targets.py)
        "reward_critic_loss": reward_critic_loss,
        "cost_critic_loss": cost_critic_loss,
        "actor_loss": actor_loss,
        "cost_penalty": penalty,
        "multiplier": multiplier,
        "q_mean": q.mean(),
        "cost_q_mean": cost_q.mean(),
        "cost_q_limit": jnp.asarray(limit, jnp.float32),
    }
    return new_state, metrics


def act(state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    """The perturbed VAE sample (OSRL); with act_samples > 1, the candidate with the largest
    min Q_r - lambda * min Q_c. Random in either mode, as the reference acts."""
    count = state.act_samples
    tiled = jnp.repeat(observations, count, axis=0)
    candidates = state.actor.apply_fn(state.actor.params, tiled, behaviour_samples(state, state.vae.params, tiled, key))
    if count == 1:
        return candidates
    reward_groups, cost_groups = reward_and_cost_values(state, state.critic.params, tiled, candidates)
    score = reward_groups.min(axis=0) - state.multiplier * cost_groups.min(axis=0)
    best = jnp.argmax(score.reshape(-1, count), axis=1)
    return jnp.take_along_axis(candidates.reshape(-1, count, candidates.shape[-1]), best[:, None, None], axis=1)[:, 0]
