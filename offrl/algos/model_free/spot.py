"""SPOT (Wu, Wu, Liu, Huang & Long, 2022, "Supported Policy Optimization for Offline Reinforcement
Learning").

TD3 whose actor is kept inside the support of the behaviour policy by a density penalty: a
conditional VAE of the behaviour policy is fitted first, then frozen, and its negative ELBO
(an upper bound on -log beta(a|s)) scores the policy's actions:
    actor: -Q_1(s, pi(s)) / mean|Q_1| + lambda * (-ELBO(s, pi(s)))
Defaults are the authors' code for D4RL locomotion (thuml/SPOT main.py, SPOT.py, train_vae.py,
configs/offline/*.yml), not CORL's spot.py (whose defaults are its AntMaze fine-tuning settings):
VAE 750x750, latent 2 * action_dim, beta 0.5, lr 1e-3, 100k VAE updates; TD3 with actor and
critic lr 3e-4, actor dropout 0.1; states normalised (for the VAE and TD3 alike), raw rewards.
lambda is per dataset in the authors' configs (0.05 to 1.0); the default 1.0 is main.py's
--lambd and offrl/train/presets/spot.json lists the per-dataset values.

The actor's dropout is active whenever the reference's actor is in training mode: in the actor
loss and in the target actor's next actions (its actor_target is a copy kept in training mode);
`act` evaluates without it, as the reference's select_action does.

The contract has one `update`, so pretraining is a phase of it: a step counter in the state
selects, with `lax.cond`, a VAE-only update for the first `vae_steps` calls and the TD3 update
(VAE frozen) after. `pretraining_steps` tells the offline engine to run those vae_steps updates
first, apart from `--steps` (which counts TD3 updates) and reported apart (summary.json
`pretrain_steps`, pretrain_metrics.jsonl); an engine that does not ask simply spends its first
vae_steps updates on the VAE.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training.train_state import TrainState

from offrl.nets import ConditionalVAE, CriticEnsemble, DeterministicPolicy
from offrl.types import Batch, Spec

NAME = "spot"
DESCRIPTION = "SPOT: TD3 with a VAE-density support constraint on the policy (VAE pretrained in-state)."
PAPER = "Wu, Wu, Liu, Huang & Long 2022, Supported Policy Optimization for Offline Reinforcement Learning"


@dataclass(frozen=True)
class Config:
    actor_learning_rate: float = 3e-4  # thuml/SPOT main.py: --actor_lr None, so --lr 3e-4
    critic_learning_rate: float = 3e-4  # thuml/SPOT main.py --lr
    vae_learning_rate: float = 1e-3  # thuml/SPOT train_vae.py --lr
    hidden_dims: tuple[int, ...] = (256, 256)  # TD3 networks (thuml/SPOT main.py --actor/critic_hidden_dim 256)
    actor_dropout: float | None = 0.1  # thuml/SPOT main.py --actor_dropout 0.1
    vae_hidden_dims: tuple[int, ...] = (750, 750)  # thuml/SPOT train_vae.py --hidden_dim 750
    vae_latent_dim: int | None = None  # None: 2 * action_dim (thuml/SPOT train_vae.py)
    vae_steps: int = 100_000  # thuml/SPOT train_vae.py --num_iters 1e5 (pretraining, apart from --steps)
    beta: float = 0.5  # KL weight of the ELBO (thuml/SPOT main.py / train_vae.py --beta)
    num_elbo_samples: int = 1  # latent samples per density estimate (thuml/SPOT main.py --num_samples)
    support_weight: float = 1.0  # lambda: thuml/SPOT main.py --lambd; per dataset: offrl/train/presets/spot.json
    batch_size: int = 256
    discount: float = 0.99
    tau: float = 0.005
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    policy_freq: int = 2
    normalize_observations: bool = True  # thuml/SPOT main.py --normalize True; train_vae.py normalises too
    normalize_rewards: bool = False  # thuml/SPOT main.py: raw rewards for locomotion


@struct.dataclass
class State:
    vae: TrainState
    actor: TrainState
    actor_target: dict
    critic: TrainState
    critic_target: dict
    rng: jax.Array
    step: jax.Array  # counts every update, VAE phase included


def init(key: jax.Array, spec: Spec, config: Config) -> State:
    vae_key, actor_key, critic_key, rng = jax.random.split(key, 4)
    observation = jnp.zeros((1, spec.observation_dim))
    action = jnp.zeros((1, spec.action_dim))
    vae = ConditionalVAE(spec.action_dim, config.vae_latent_dim or 2 * spec.action_dim, config.vae_hidden_dims)
    actor = DeterministicPolicy(spec.action_dim, config.hidden_dims, dropout_rate=config.actor_dropout)
    critic = CriticEnsemble(config.hidden_dims, num_critics=2)
    actor_params = actor.init(actor_key, observation)
    critic_params = critic.init(critic_key, observation, action)
    return State(
        vae=TrainState.create(apply_fn=vae.apply, params=vae.init(vae_key, observation, action, vae_key), tx=optax.adam(config.vae_learning_rate)),
        actor=TrainState.create(apply_fn=actor.apply, params=actor_params, tx=optax.adam(config.actor_learning_rate)),
        actor_target=actor_params,
        critic=TrainState.create(apply_fn=critic.apply, params=critic_params, tx=optax.adam(config.critic_learning_rate)),
        critic_target=critic_params,
        rng=rng,
        step=jnp.zeros((), jnp.int32),
    )


def pretraining_steps(config: Config) -> int:
    """Updates the offline engine runs before `--steps` (the VAE phase), see the module docstring."""
    return config.vae_steps


def negative_elbo(vae: TrainState, params: dict, observations, actions, key, config: Config) -> jax.Array:
    return vae.apply_fn(
        params, observations, actions, key, config.beta, config.num_elbo_samples, method=ConditionalVAE.negative_elbo
    )


def _vae_phase(state: State, batch: Batch, key: jax.Array, config: Config):
    def loss_fn(params):
        return negative_elbo(state.vae, params, batch.observations, batch.actions, key, config).mean()

    vae_loss, grads = jax.value_and_grad(loss_fn)(state.vae.params)
    nan = jnp.full((), jnp.nan)
    metrics = {"vae_loss": vae_loss, "critic_loss": nan, "actor_loss": nan, "support_penalty": nan, "q_mean": nan}
    return state.replace(vae=state.vae.apply_gradients(grads=grads)), metrics


def _td3_phase(state: State, batch: Batch, key: jax.Array, config: Config):
    noise_key, elbo_key, target_dropout_key, actor_dropout_key = jax.random.split(key, 4)
    noise = jnp.clip(
        jax.random.normal(noise_key, batch.actions.shape) * config.policy_noise, -config.noise_clip, config.noise_clip
    )
    # The reference's target actor runs in training mode, dropout included (module docstring).
    target_actions = state.actor.apply_fn(state.actor_target, batch.next_observations, True, rngs={"dropout": target_dropout_key})
    next_actions = jnp.clip(target_actions + noise, -1.0, 1.0)
    next_q = state.critic.apply_fn(state.critic_target, batch.next_observations, next_actions).min(axis=0)
    target_q = batch.rewards + config.discount * (1.0 - batch.dones) * next_q

    def critic_loss_fn(params):
        q = state.critic.apply_fn(params, batch.observations, batch.actions)
        return ((q - target_q) ** 2).mean(axis=1).sum(), q

    (critic_loss, q), grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(state.critic.params)
    critic = state.critic.apply_gradients(grads=grads)

    def actor_step(_):
        def actor_loss_fn(params):
            actions = state.actor.apply_fn(params, batch.observations, True, rngs={"dropout": actor_dropout_key})
            q_pi = critic.apply_fn(critic.params, batch.observations, actions)[0]
            support_penalty = negative_elbo(state.vae, state.vae.params, batch.observations, actions, elbo_key, config)
            q_term = -q_pi.mean() / jax.lax.stop_gradient(jnp.abs(q_pi).mean())
            return q_term + config.support_weight * support_penalty.mean(), support_penalty.mean()

        (actor_loss, support_penalty), actor_grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(state.actor.params)
        actor = state.actor.apply_gradients(grads=actor_grads)
        actor_target = optax.incremental_update(actor.params, state.actor_target, config.tau)
        critic_target = optax.incremental_update(critic.params, state.critic_target, config.tau)
        return actor, actor_target, critic_target, actor_loss, support_penalty

    def skip(_):
        nan = jnp.full((), jnp.nan)
        return state.actor, state.actor_target, state.critic_target, nan, nan

    td3_step = state.step - config.vae_steps
    actor, actor_target, critic_target, actor_loss, support_penalty = jax.lax.cond(
        td3_step % config.policy_freq == 0, actor_step, skip, None
    )
    new_state = state.replace(actor=actor, actor_target=actor_target, critic=critic, critic_target=critic_target)
    metrics = {
        "vae_loss": jnp.full((), jnp.nan),
        "critic_loss": critic_loss,
        "actor_loss": actor_loss,
        "support_penalty": support_penalty,
        "q_mean": q.mean(),
    }
    return new_state, metrics


def update(state: State, batch: Batch, config: Config) -> tuple[State, dict[str, jax.Array]]:
    rng, key = jax.random.split(state.rng)
    # Pretraining phase chosen by the step counter (see the module docstring).
    new_state, metrics = jax.lax.cond(
        state.step < config.vae_steps,
        lambda s: _vae_phase(s, batch, key, config),
        lambda s: _td3_phase(s, batch, key, config),
        state,
    )
    return new_state.replace(rng=rng, step=state.step + 1), metrics


def act(state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    return state.actor.apply_fn(state.actor.params, observations)


# Online fine-tuning settings (offrl.train.finetune), from CORL's algorithms/finetune/spot.py and
# its configs/finetune/spot/*.yaml: lambda cools linearly to 0.2 of its value (lambd_cool true,
# lambd_end 0.2: lambda * max(0.2, 1 - t / T)), collection adds N(0, 0.1) noise (expl_noise), and
# the optimisers restart at the online phase ("Resetting optimizers"). Its online_discount 0.995
# is an AntMaze setting (0.99 in the Adroit configs) and is not applied.
FINETUNE = {
    "decay": {"support_weight": 0.2},
    "exploration_noise": 0.1,
    "reset_optimizers": True,
}
