"""ReBRAC (Tarasov, Kurenkov, Nikulin & Kolesnikov, 2023, "Revisiting the Minimalist Approach to
Offline Reinforcement Learning").

TD3+BC with the design choices the paper found to matter: LayerNorm critics, deeper networks,
large batches, and a behaviour-cloning penalty in both losses:
    actor:  mean(actor_bc_coef * |pi(s) - a|^2 - Q(s, pi(s)) / mean|Q|)
    critic: y = r + gamma * (1 - done) * (min_i Q'_i(s', a') - critic_bc_coef * |a' - a'_data|^2),
            a' = pi'(s') + clipped noise, a'_data = the dataset's action at s'.
Defaults are the paper's D4RL gym settings (Appendix, hyperparameter tables; reference code
tinkoff-ai/ReBRAC): lr 1e-3, batch 1024, 3 hidden layers of 256, LayerNorm in the critic only,
and the halfcheetah-medium row of the per-dataset table for the two BC coefficients.
Networks as the reference's src/networks.py (DetActor, Critic): each hidden layer is
Dense -> ReLU -> LayerNorm (LayerNorm after the activation, unlike RLPD's), with the EDAC
initialisation (PyTorch-default kernels, biases 0.1, output layer U(+-1e-3) for the actor and
U(+-3e-3) for the critic); see offrl.nets.MLP.

a'_data comes from the batch's `next_actions`, which the engine provides because this module
declares it in EXTRA_FIELDS (offrl/train/extra_fields.py says how episode ends and online rows
are filled).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training.train_state import TrainState

from offrl.nets import CriticEnsemble, DeterministicPolicy
from offrl.types import Batch, Spec

NAME = "rebrac"
EXTRA_FIELDS = ("next_actions",)  # the critic penalty needs the dataset action at s'
DESCRIPTION = "ReBRAC: TD3+BC with LayerNorm critics and behaviour-cloning penalties in actor and critic."
PAPER = "Tarasov, Kurenkov, Nikulin & Kolesnikov 2023, Revisiting the Minimalist Approach to Offline RL"


@dataclass(frozen=True)
class Config:
    actor_learning_rate: float = 1e-3  # paper, gym: 1e-3 for actor and critic
    critic_learning_rate: float = 1e-3
    hidden_dims: tuple[int, ...] = (256, 256, 256)  # paper: 3 hidden layers for actor and critic
    batch_size: int = 1024  # paper, gym
    discount: float = 0.99
    tau: float = 5e-3
    policy_noise: float = 0.2  # TD3 target smoothing
    noise_clip: float = 0.5
    policy_freq: int = 2  # TD3 delayed actor updates
    actor_bc_coef: float = 1e-3  # paper's table, halfcheetah-medium (beta_1)
    critic_bc_coef: float = 1e-2  # paper's table, halfcheetah-medium (beta_2)
    normalize_q: bool = True  # divide the actor's Q term by mean|Q| (as TD3+BC)
    critic_layer_norm: bool = True  # paper: LayerNorm in the critic ...
    actor_layer_norm: bool = False  # ... not in the actor (gym)
    actor_output_init: float = 1e-3  # reference src/networks.py DetActor: last Dense U(+-1e-3)
    critic_output_init: float = 3e-3  # reference src/networks.py Critic: last Dense U(+-3e-3)
    normalize_observations: bool = False  # reference code: normalize_states False
    normalize_rewards: bool = False


@struct.dataclass
class State:
    actor: TrainState
    actor_target: dict
    critic: TrainState
    critic_target: dict
    rng: jax.Array
    step: jax.Array


def init(key: jax.Array, spec: Spec, config: Config) -> State:
    actor_key, critic_key, rng = jax.random.split(key, 3)
    observation = jnp.zeros((1, spec.observation_dim))
    action = jnp.zeros((1, spec.action_dim))
    # Reference src/networks.py: Dense -> ReLU -> LayerNorm, EDAC initialisation.
    actor = DeterministicPolicy(
        spec.action_dim, config.hidden_dims, layer_norm=config.actor_layer_norm, layer_norm_position="post_activation",
        initialization="edac", output_init_scale=config.actor_output_init,
    )
    critic = CriticEnsemble(
        config.hidden_dims, num_critics=2, layer_norm=config.critic_layer_norm, layer_norm_position="post_activation",
        initialization="edac", output_init_scale=config.critic_output_init,
    )
    actor_params = actor.init(actor_key, observation)
    critic_params = critic.init(critic_key, observation, action)
    return State(
        actor=TrainState.create(apply_fn=actor.apply, params=actor_params, tx=optax.adam(config.actor_learning_rate)),
        actor_target=actor_params,
        critic=TrainState.create(apply_fn=critic.apply, params=critic_params, tx=optax.adam(config.critic_learning_rate)),
        critic_target=critic_params,
        rng=rng,
        step=jnp.zeros((), jnp.int32),
    )


def bellman_target(
    state: State, batch: Batch, next_data_actions: jax.Array, noise_key: jax.Array, config: Config
) -> jax.Array:
    """r + gamma * (1 - done) * (min_i Q'_i(s', a') - critic_bc_coef * |a' - a'_data|^2)."""
    noise = jnp.clip(
        jax.random.normal(noise_key, batch.actions.shape) * config.policy_noise, -config.noise_clip, config.noise_clip
    )
    next_actions = jnp.clip(state.actor.apply_fn(state.actor_target, batch.next_observations) + noise, -1.0, 1.0)
    next_q = state.critic.apply_fn(state.critic_target, batch.next_observations, next_actions).min(axis=0)
    penalty = config.critic_bc_coef * ((next_actions - next_data_actions) ** 2).sum(axis=-1)
    return batch.rewards + config.discount * (1.0 - batch.dones) * (next_q - penalty)


def update(state: State, batch: Batch, config: Config) -> tuple[State, dict[str, jax.Array]]:
    rng, noise_key = jax.random.split(state.rng)
    # A Batch without next_actions (built by hand, not by an engine) uses the action at s instead.
    next_data_actions = batch.actions if batch.next_actions is None else batch.next_actions
    target_q = bellman_target(state, batch, next_data_actions, noise_key, config)

    def critic_loss_fn(params):
        q = state.critic.apply_fn(params, batch.observations, batch.actions)
        return ((q - target_q) ** 2).mean(axis=1).sum(), q

    (critic_loss, q), grads = jax.value_and_grad(critic_loss_fn, has_aux=True)(state.critic.params)
    critic = state.critic.apply_gradients(grads=grads)

    def actor_step(_):
        def actor_loss_fn(params):
            actions = state.actor.apply_fn(params, batch.observations)
            q_pi = critic.apply_fn(critic.params, batch.observations, actions).min(axis=0)
            scale = jax.lax.stop_gradient(1.0 / jnp.abs(q_pi).mean()) if config.normalize_q else 1.0
            bc_penalty = ((actions - batch.actions) ** 2).sum(axis=-1)
            return (config.actor_bc_coef * bc_penalty - scale * q_pi).mean(), bc_penalty.mean()

        (actor_loss, bc_penalty), actor_grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(state.actor.params)
        actor = state.actor.apply_gradients(grads=actor_grads)
        actor_target = optax.incremental_update(actor.params, state.actor_target, config.tau)
        critic_target = optax.incremental_update(critic.params, state.critic_target, config.tau)
        return actor, actor_target, critic_target, actor_loss, bc_penalty

    def skip(_):
        nan = jnp.full((), jnp.nan)  # no actor update this step; the engine averages with nanmean
        return state.actor, state.actor_target, state.critic_target, nan, nan

    actor, actor_target, critic_target, actor_loss, bc_penalty = jax.lax.cond(
        state.step % config.policy_freq == 0, actor_step, skip, None
    )
    new_state = State(
        actor=actor, actor_target=actor_target, critic=critic, critic_target=critic_target, rng=rng, step=state.step + 1
    )
    metrics = {"critic_loss": critic_loss, "actor_loss": actor_loss, "bc_penalty": bc_penalty, "q_mean": q.mean()}
    return new_state, metrics


def act(state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    return state.actor.apply_fn(state.actor.params, observations)


# Online fine-tuning settings (offrl.train.finetune), from the reference
# (tinkoff-ai/ReBRAC src/algorithms/rebrac_finetune.py): the actor's BC coefficient decays linearly
# to 0 over the online steps (min_decay_coef 0), the critic's is 0 online (critic_bc_coef *= 0),
# collection adds N(0, 0.03) noise (expl_noise) and batches mix 50/50 (mixing_ratio 0.5). The
# per-task learning rates and discount of its configs/finetune are AntMaze/Adroit settings.
FINETUNE = {
    "config": {"critic_bc_coef": 0.0},
    "decay": {"actor_bc_coef": 0.0},
    "offline_ratio": 0.5,
    "exploration_noise": 0.03,
}
