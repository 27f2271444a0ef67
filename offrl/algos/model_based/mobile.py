"""MOBILE (Sun et al. 2023, "Model-Bellman Inconsistency Penalized Offline Policy Optimization").

SAC on a mix of dataset transitions and h-step rollouts of a learned dynamics ensemble, like
MOPO, but the penalty is the model's Bellman inconsistency, recomputed at every update with the
current critics: for each model row (s, a), N next states are drawn from every elite's Gaussian,
the target value min_j Q'_j(s', a'), a' ~ pi(.|s'), is averaged over the N draws per elite, and
    u(s, a) = std over elites of that average,      r~(s, a) = r(s, a) - beta * u(s, a)
(yihaosun1124/mobile policies/mobile.py compute_lcb: `pred_next_qs.mean(0).std(0)`; dataset rows
are not penalised). The engine draws the samples and calls `model_reward_penalty` on the batch's
model rows (offrl/train/model_rollouts.py); its rollouts carry no MOPO penalty (penalty_coef 0).

The update follows MOBILEPolicy.learn: critic (deterministic backup: no entropy term; target
floored at 0), then actor against the updated critic, then temperature (alpha = min(exp(log
alpha), 1)), then the target critics. Defaults are the authors' configs/gym/default.py
(yihaosun1124/mobile@4882dce, the same as OfflineRL-Kit run_example/run_mobile.py except where
said); rollout length h and beta per dataset are presets (offrl/train/presets/mobile.json).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training.train_state import TrainState

from offrl.algos.online import sac
from offrl.errors import ConfigError
from offrl.models.buffer import ModelBuffer, RolloutSettings, empty_model_buffer
from offrl.nets import CriticEnsemble, TanhGaussianPolicy
from offrl.types import Batch, Spec

NAME = "mobile"
DESCRIPTION = "MOBILE: SAC on model rollouts, rewards penalised by the spread of target values over sampled next states."
PAPER = "Sun et al. 2023, Model-Bellman Inconsistency Penalized Offline Policy Optimization"

MAX_Q_BACKUP_SAMPLES = 10  # mobile.py learn: next actions repeated 10 times for the max-Q backup


@dataclass(frozen=True)
class Config:
    actor_learning_rate: float = 1e-4  # default.py actor_lr
    critic_learning_rate: float = 3e-4  # default.py critic_lr
    temperature_learning_rate: float = 1e-4  # default.py alpha_lr
    actor_decay_steps: int = 3_000_000  # lr_scheduler: actor cosine-annealed over epoch 3000 x step_per_epoch 1000; 0: constant
    hidden_dims: tuple[int, ...] = (256, 256)  # default.py hidden_dims
    num_critics: int = 2  # default.py num_q_ensemble
    batch_size: int = 256  # default.py batch_size
    discount: float = 0.99  # default.py gamma
    tau: float = 5e-3  # default.py tau
    auto_temperature: bool = True  # default.py auto_alpha (hopper medium / medium-replay: False, presets)
    init_temperature: float = 1.0  # auto: log_alpha starts at 0 (train.py); fixed: default.py alpha 0.2 (presets)
    target_entropy: float | None = None  # None: -action_dim (train.py)
    deterministic_backup: bool = True  # default.py: no entropy term in the critic target
    max_q_backup: bool = False  # default.py: max over 10 sampled next actions instead of one
    q_target_floor: float | None = 0.0  # mobile.py learn: torch.clamp(target_q, 0, None); None: no floor
    penalty_coef: float = 1.0  # beta, default.py penalty_coef (per dataset: presets)
    num_samples: int = 10  # next states per elite for the penalty, default.py num_samples
    normalize_observations: bool = False  # train.py trains on raw states
    normalize_rewards: bool = False  # default.py norm_reward
    horizon: int = 1  # rollout length h, default.py rollout_length (per dataset: presets)
    rollout_batch: int = 50_000  # default.py rollout_batch_size
    rollout_every: int = 1_000  # default.py rollout_freq
    real_ratio: float = 0.05  # default.py real_ratio
    model_buffer_capacity: int = 250_000  # rollout_batch_size x rollout_length x model_retain_epochs 5 (train.py)
    dynamics_num_models: int = 7  # default.py n_ensemble
    dynamics_num_elites: int = 5  # default.py n_elites
    dynamics_hidden_dims: tuple[int, ...] = (200, 200, 200, 200)  # default.py dynamics_hidden_dims
    dynamics_weight_decay: tuple[float, ...] = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)  # default.py, per layer
    dynamics_max_epochs: int = 0  # 0: default.py None, train until 5 epochs without improvement (run_mobile.py: 30)
    termination: str = "env"  # "env": the env's termination function; "learned": the model's terminal head; "never": time limits only
    model_path: str | None = None  # a model directory from `offrl models train`; None: the cache for this dataset
    retrain_model: bool = False  # train a fresh model even if the cache holds one

    def __post_init__(self):
        if not self.penalty_coef >= 0:  # also refuses NaN
            raise ConfigError(f"--penalty-coef is {self.penalty_coef}; expected a number >= 0 (MOBILE's beta).")
        if self.num_samples < 1:
            raise ConfigError(f"--num-samples is {self.num_samples}; expected at least 1 next state per elite.")


@struct.dataclass
class State:
    actor: TrainState
    critic: TrainState
    critic_target: dict
    temperature: TrainState
    rng: jax.Array
    model_buffer: ModelBuffer


def rollout_settings(config: Config) -> RolloutSettings:
    # No reward penalty in the rollouts: MOBILE penalises at each update (model_reward_penalty).
    return RolloutSettings(horizon=config.horizon, rollout_batch=config.rollout_batch, rollout_every=config.rollout_every,
                           real_ratio=config.real_ratio, capacity=config.model_buffer_capacity, penalty_coef=0.0)


def init(key: jax.Array, spec: Spec, config: Config) -> State:
    actor_key, critic_key, temperature_key, rng = jax.random.split(key, 4)
    observation, action = jnp.zeros((1, spec.observation_dim)), jnp.zeros((1, spec.action_dim))
    actor = TanhGaussianPolicy(spec.action_dim, config.hidden_dims)
    critic = CriticEnsemble(config.hidden_dims, num_critics=config.num_critics)
    temperature = sac.Temperature(config.init_temperature)
    actor_rate = (optax.cosine_decay_schedule(config.actor_learning_rate, config.actor_decay_steps)
                  if config.actor_decay_steps > 0 else config.actor_learning_rate)
    critic_params = critic.init(critic_key, observation, action)
    return State(
        actor=TrainState.create(apply_fn=actor.apply, params=actor.init(actor_key, observation), tx=optax.adam(actor_rate)),
        critic=TrainState.create(apply_fn=critic.apply, params=critic_params, tx=optax.adam(config.critic_learning_rate)),
        critic_target=critic_params,
        temperature=TrainState.create(apply_fn=temperature.apply, params=temperature.init(temperature_key),
                                      tx=optax.adam(config.temperature_learning_rate)),
        rng=rng,
        model_buffer=empty_model_buffer(spec.observation_dim, spec.action_dim, config.model_buffer_capacity),
    )


def temperature_value(state: State, config: Config) -> jax.Array:
    if not config.auto_temperature:
        return jnp.float32(config.init_temperature)
    return jnp.minimum(sac.temperature_value(state), 1.0)  # mobile.py: alpha clamped to [0, 1]


def bellman_inconsistency(state: State, next_observation_samples: jax.Array, key: jax.Array) -> jax.Array:
    """Per row: std over elites (unbiased, torch's .std) of the mean over samples of
    min_j Q'_j(s', a'), a' ~ pi(.|s'); samples are (num_samples, num_elites, batch, observation_dim)."""
    num_samples, num_elites, batch, observation_dim = next_observation_samples.shape
    flat = next_observation_samples.reshape(-1, observation_dim)
    actions, _ = sac.sample_actions(state.actor, state.actor.params, flat, key)
    target_q = state.critic.apply_fn(state.critic_target, flat, actions).min(axis=0).reshape(num_samples, num_elites, batch)
    return target_q.mean(axis=0).std(axis=0, ddof=1)


def model_reward_penalty(state: State, observations: jax.Array, actions: jax.Array, sample_next_observations: Callable,
                         key: jax.Array, config: Config) -> jax.Array:
    """beta * u(s, a) for model rows (the engine's hook, offrl/train/model_rollouts.py)."""
    sample_key, action_key = jax.random.split(key)
    samples = sample_next_observations(observations, actions, sample_key, config.num_samples)
    return config.penalty_coef * jax.lax.stop_gradient(bellman_inconsistency(state, samples, action_key))


def critic_target(state: State, batch: Batch, config: Config, alpha: jax.Array, key: jax.Array) -> jax.Array:
    """r + gamma (1 - done) V'(s') as mobile.py learn builds it (rewards already penalised)."""
    if config.max_q_backup:
        repeated = jnp.repeat(batch.next_observations, MAX_Q_BACKUP_SAMPLES, axis=0)
        next_actions, _ = sac.sample_actions(state.actor, state.actor.params, repeated, key)
        next_qs = state.critic.apply_fn(state.critic_target, repeated, next_actions)
        next_q = next_qs.reshape(next_qs.shape[0], -1, MAX_Q_BACKUP_SAMPLES).max(axis=-1).min(axis=0)
    else:
        next_actions, next_log_probs = sac.sample_actions(state.actor, state.actor.params, batch.next_observations, key)
        next_q = state.critic.apply_fn(state.critic_target, batch.next_observations, next_actions).min(axis=0)
        if not config.deterministic_backup:
            next_q = next_q - alpha * next_log_probs
    target = batch.rewards + config.discount * (1.0 - batch.dones) * next_q
    return target if config.q_target_floor is None else jnp.maximum(target, config.q_target_floor)


def update(state: State, batch: Batch, config: Config) -> tuple[State, dict[str, jax.Array]]:
    rng, next_key, actor_key = jax.random.split(state.rng, 3)
    alpha = temperature_value(state, config)
    target_q = jax.lax.stop_gradient(critic_target(state, batch, config, alpha, next_key))

    def critic_loss_fn(params):
        q = state.critic.apply_fn(params, batch.observations, batch.actions)
        return ((q - target_q) ** 2).mean(), q  # mobile.py: mean over critics and rows

    (critic_loss, q), critic_grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(state.critic.params)
    critic = state.critic.apply_gradients(grads=critic_grads)
    actor, actor_loss, log_probs, _ = sac.actor_step(state.actor, critic, batch.observations, alpha, actor_key)
    temperature, temperature_loss, entropy = state.temperature, jnp.float32(0.0), -jax.lax.stop_gradient(log_probs).mean()
    if config.auto_temperature:
        temperature, temperature_loss, entropy = sac.temperature_step(
            state.temperature, log_probs, sac.target_entropy(batch.actions.shape[-1], config))
    new_state = state.replace(actor=actor, critic=critic, temperature=temperature, rng=rng,
                              critic_target=optax.incremental_update(critic.params, state.critic_target, config.tau))
    metrics = {"critic_loss": critic_loss, "actor_loss": actor_loss, "temperature_loss": temperature_loss, "alpha": alpha,
               "entropy": entropy, "q_mean": q.mean(), "target_q_mean": target_q.mean()}
    return new_state, metrics


def act(state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    return sac.act(state, observations, key, deterministic)
