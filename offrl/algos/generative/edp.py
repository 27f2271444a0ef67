"""Efficient Diffusion Policies (Kang et al., 2023, "Efficient Diffusion Policies for Offline
Reinforcement Learning"), on Diffusion-QL (Wang, Hunt & Zhou, 2023).

Diffusion-QL trains a DDPM policy with its denoising (BC) loss plus a Q term on actions sampled
through the whole reverse chain: actor_loss = L_denoise - eta * Q(s, a~pi) / mean|Q|. EDP's action
approximation replaces that chain by one network call: corrupt the dataset action to a_t, estimate
a_0 = (a_t - sqrt(1 - abar_t) eps(s, a_t, t)) / sqrt(abar_t), and push Q(s, a_0) up; this allows
T = 1000 training steps, while sampling (critic targets, acting) uses K = 15 network calls of the
third-order DPM-Solver (`solver="dpm3"`, offrl/nets/diffusion.py; "first_order" is DDIM, or
ancestral DDPM at K = T). Acting draws N actions and picks one with probability softmax(Q)
(Diffusion-QL's sample_action, EDP's energy-based selection). `action_approximation=False` with
T = K = 5 on the VP schedule and the first-order (ancestral) solver is Diffusion-QL itself
(gradients through the sampled chain).
Defaults: Diffusion-QL (Zhendong-Wang/Diffusion-Policies-for-Offline-RL, main.py hyperparameters
for gym locomotion) and EDP (sail-sg/edp, diffusion/trainer.py), as commented.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training.train_state import TrainState

from offrl.errors import ConfigError
from offrl.nets import CriticEnsemble
from offrl.nets import diffusion
from offrl.nets.denoiser import ConditionalDenoiser
from offrl.types import Batch, Spec

NAME = "edp"
DESCRIPTION = "Diffusion-QL with EDP's one-call action approximation and a few-step third-order DPM-Solver."
PAPER = "Kang et al. 2023, Efficient Diffusion Policies for Offline Reinforcement Learning"


@dataclass(frozen=True)
class Config:
    actor_learning_rate: float = 3e-4  # Diffusion-QL lr 3e-4 (locomotion)
    critic_learning_rate: float = 3e-4
    hidden_dims: tuple[int, ...] = (256, 256, 256)  # Diffusion-QL: 3 hidden layers of 256, Mish, actor and critic
    batch_size: int = 256
    discount: float = 0.99
    tau: float = 0.005
    actor_tau: float = 0.005  # EMA of the acting denoiser (Diffusion-QL ema_decay 0.995)
    eta: float = 1.0  # weight of the normalised Q term (Diffusion-QL eta, locomotion)
    action_approximation: bool = True  # EDP; False: Diffusion-QL's Q term through the sampled chain
    # sail-sg/edp README.md: "To use `dpm`, set `--sample_method=dpm` and `-algo_cfg.num_timesteps=1000`"
    # (its default sample_method 'ddpm' is ancestral over dql.py num_timesteps = 100)
    diffusion_steps: int = 1000  # EDP with DPM-Solver: T = 1000 (README; Diffusion-QL: 5)
    beta_schedule: str = "linear"  # EDP's schedule_name linear (Diffusion-QL: vp)
    sampling_steps: int = 15  # EDP's DPM-Solver steps (dql.py dpm_steps = 15); with dpm3 prefer a multiple of 3 (K = 14 or 20 end in a lower-order step across the steep end of the grid and are several times less accurate: docs/generative.md)
    solver: str = "dpm3"  # EDP nets.py dpm_sample: DPM-Solver order 3, singlestep, time-uniform (first_order: DDIM / ancestral)
    num_samples: int = 50  # actions drawn per state when acting (Diffusion-QL sample_action: 50)
    time_features: int = 16  # Diffusion-QL's SinusoidalPosEmb(t_dim = 16)
    normalize_observations: bool = False  # Diffusion-QL feeds raw D4RL states
    normalize_rewards: bool = False

    def __post_init__(self):
        diffusion.make_schedule(self.beta_schedule, self.diffusion_steps)  # refuses a bad schedule or T here
        diffusion.check_steps(self.sampling_steps, self.diffusion_steps, solver=self.solver, schedule_kind=self.beta_schedule)
        if self.num_samples <= 0:
            raise ConfigError(f"--num-samples is {self.num_samples}; expected a positive number of action samples.")


@struct.dataclass
class State:
    actor: TrainState
    actor_target: dict
    critic: TrainState
    critic_target: dict
    rng: jax.Array
    action_dim: int = struct.field(pytree_node=False, default=1)
    sampler: tuple = struct.field(pytree_node=False, default=("linear", 1000, 15, 50, "dpm3"))  # schedule, T, K, N, solver


def init(key: jax.Array, spec: Spec, config: Config) -> State:
    actor_key, critic_key, rng = jax.random.split(key, 3)
    observation = jnp.zeros((1, spec.observation_dim))
    action = jnp.zeros((1, spec.action_dim))
    actor = ConditionalDenoiser(spec.action_dim, config.hidden_dims, time_features=config.time_features, activation="mish")
    critic = CriticEnsemble(config.hidden_dims, num_critics=2)
    actor_params = actor.init(actor_key, observation, action, jnp.zeros((1,)))
    critic_params = critic.init(critic_key, observation, action)
    return State(
        actor=TrainState.create(apply_fn=actor.apply, params=actor_params, tx=optax.adam(config.actor_learning_rate)),
        actor_target=actor_params,
        critic=TrainState.create(apply_fn=critic.apply, params=critic_params, tx=optax.adam(config.critic_learning_rate)),
        critic_target=critic_params,
        rng=rng,
        action_dim=spec.action_dim,
        sampler=(config.beta_schedule, config.diffusion_steps, config.sampling_steps, config.num_samples, config.solver),
    )


def policy_samples(state: State, params, observations: jax.Array, key: jax.Array) -> jax.Array:
    kind, total, steps, _, solver = state.sampler
    return diffusion.sample(state.actor.apply_fn, params, diffusion.make_schedule(kind, total), observations, key,
                            (*observations.shape[:-1], state.action_dim), steps, solver=solver)


def update(state: State, batch: Batch, config: Config) -> tuple[State, dict[str, jax.Array]]:
    rng, next_key, actor_key, chain_key = jax.random.split(state.rng, 4)
    schedule = diffusion.make_schedule(config.beta_schedule, config.diffusion_steps)

    next_actions = policy_samples(state, state.actor_target, batch.next_observations, next_key)
    next_q = state.critic.apply_fn(state.critic_target, batch.next_observations, next_actions).min(axis=0)
    target_q = batch.rewards + config.discount * (1.0 - batch.dones) * next_q

    def critic_loss_fn(params):
        q = state.critic.apply_fn(params, batch.observations, batch.actions)
        return ((q - target_q) ** 2).mean(axis=1).sum(), q

    (critic_loss, q), grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(state.critic.params)
    critic = state.critic.apply_gradients(grads=grads)

    def actor_loss_fn(params):
        bc_loss, _, approximate = diffusion.denoising_terms(
            state.actor.apply_fn, params, schedule, batch.observations, batch.actions, actor_key)
        if config.action_approximation:
            new_actions = jnp.clip(approximate, -1.0, 1.0)
        else:
            new_actions = policy_samples(state, params, batch.observations, chain_key)
        q_new = critic.apply_fn(critic.params, batch.observations, new_actions)
        # Diffusion-QL: -Q1 / mean|Q2|, the scale held fixed.
        q_loss = -q_new[0].mean() / jax.lax.stop_gradient(jnp.abs(q_new[1]).mean())
        return bc_loss + config.eta * q_loss, (bc_loss, q_loss)

    (actor_loss, (bc_loss, q_loss)), grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(state.actor.params)
    actor = state.actor.apply_gradients(grads=grads)

    new_state = state.replace(
        actor=actor,
        actor_target=optax.incremental_update(actor.params, state.actor_target, config.actor_tau),
        critic=critic,
        critic_target=optax.incremental_update(critic.params, state.critic_target, config.tau),
        rng=rng,
    )
    metrics = {"actor_loss": actor_loss, "bc_loss": bc_loss, "q_loss": q_loss, "critic_loss": critic_loss, "q_mean": q.mean()}
    return new_state, metrics


def act(state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    """N actions from the EMA policy, one picked with probability softmax(Q) (Diffusion-QL's rule
    at evaluation too, so `deterministic` changes nothing)."""
    num_samples = state.sampler[3]
    sample_key, pick_key = jax.random.split(key)
    repeated = jnp.repeat(observations[:, None, :], num_samples, axis=1)
    candidates = policy_samples(state, state.actor_target, repeated, sample_key)
    q = state.critic.apply_fn(state.critic_target, repeated, candidates).min(axis=0)  # (batch, N)
    pick = jax.random.categorical(pick_key, q, axis=-1)
    return jnp.take_along_axis(candidates, pick[:, None, None], axis=1)[:, 0]
