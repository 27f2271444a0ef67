"""CPQ: Constraints Penalized Q-learning (Xu, Zhan & Zhu 2022), as OSRL implements it.

CPQ makes actions unlike the data's look unsafe to its cost critic, then ignores the reward value
of whatever its cost critic deems unsafe:
    cost critic:   sum_j (Q_c,j(s, a) - y_c)^2 - alpha (ood_cost_q - ood_limit),
                   y_c = c + gamma (1 - d) Q'_c(s', a'),   a' ~ pi(s'),
                   ood_cost_q = mean over s and a~ ~ pi(s) of 1_ood(s, a~) Q_c(s, a~)
    reward critic: y_r = reward_scale r + gamma (1 - d) 1[Q'_c(s', a') <= limit] Q'_r(s', a')
    actor:         maximise mean 1[Q_c(s, a) <= limit] Q_r(s, a),   a ~ pi(s)  (no entropy term)
    alpha:         log alpha += alpha_lr * alpha * (ood_limit - ood_cost_q), clipped to [-5, 5]
Q_r, Q_c (Q' for the target networks) are each critic's minimum over its networks (OSRL
EnsembleQCritic.predict); limit is the per-step limit of kappa = target_cost over T =
max_episode_steps steps (vae_critics.cost_q_limit), ood_limit = qc_scalar * limit. A sampled
action a~ is out of distribution (1_ood) when the VAE's posterior KL at (s, a~) is in the top
quarter of the batch's (the VAE is fitted to the data's (s, a)). Update order: VAE, both critics
(from the actor before its step), actor (against the updated critics), soft target update.
Where Q_c exceeds the limit at every action the actor gets no gradient at all (CPQ's mask), so a
cost critic that deems everything unsafe stops its learning (measured in docs/safe-rl.md).

Defaults: OSRL `examples/configs/cpq_configs.py` (CPQTrainConfig) and `osrl/algorithms/cpq.py`,
`osrl/common/net.py`. Differences, said plainly:
- OSRL computes ood_cost_q under torch.no_grad from the target cost critic, so its alpha term adds a
  constant to the cost loss and never reaches the critic; here the gradient reaches the current cost
  critic (the paper's cost-critic objective, which raises Q_c at out-of-distribution actions), and
  alpha's step reads that same value. `ood_cost_gradient=False` is OSRL's code in this respect.
- The out-of-distribution candidates are the actor's tanh-squashed samples (OSRL samples the
  pre-tanh Gaussian, actions outside [-1, 1] the actor never takes).
- Both targets use (1 - terminal): OSRL's reward critic stops at terminals and timeouts alike (its
  dataset's `done`) and its cost critic never stops. Both share one set of next actions.

Engine hooks: `EXTRA_FIELDS = ("costs",)` puts each transition's cost in the batch; data without
costs is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training.train_state import TrainState

from offrl.algos.safe.vae_critics import behaviour_vae, bellman_errors, cost_q_limit, reward_and_cost_critics, vae_step
from offrl.errors import ConfigError
from offrl.nets import ConditionalVAE, TanhGaussianPolicy
from offrl.types import Batch, Spec

NAME = "cpq"
DESCRIPTION = "CPQ: a cost critic that values out-of-distribution actions as unsafe; reward bootstraps and actor only where it deems safe."
PAPER = "Xu, Zhan & Zhu 2022, Constraints Penalized Q-learning for Safe Offline Reinforcement Learning"
EXTRA_FIELDS = ("costs",)
LOG_ALPHA_BOUNDS = (-5.0, 5.0)  # osrl/algorithms/cpq.py: log_alpha.clamp_(min=-5.0, max=5.0); it starts at 0
OOD_KL_QUANTILE = 0.75  # osrl/algorithms/cpq.py: KL >= torch.quantile(KL_loss, 0.75) marks an action OOD


@dataclass(frozen=True)
class Config:
    actor_learning_rate: float = 1e-4  # OSRL examples/configs/cpq_configs.py actor_lr
    critic_learning_rate: float = 1e-3  # OSRL cpq_configs.py critic_lr (reward and cost critics)
    alpha_learning_rate: float = 1e-4  # OSRL cpq_configs.py alpha_lr (a plain gradient step on log alpha, cpq.py)
    vae_learning_rate: float = 1e-3  # OSRL cpq_configs.py vae_lr
    hidden_dims: tuple[int, ...] = (256, 256)  # actor and critics (OSRL cpq_configs.py a_hidden_sizes, c_hidden_sizes)
    vae_hidden_dims: tuple[int, ...] = (400, 400)  # OSRL cpq_configs.py vae_hidden_sizes 400 (two layers each side, net.py VAE)
    vae_latent_dim: int | None = None  # None: 2 * action_dim (osrl/algorithms/cpq.py latent_dim)
    beta: float = 0.5  # KL weight of the VAE loss (OSRL cpq_configs.py)
    num_q: int = 2  # reward networks (OSRL cpq_configs.py num_q)
    num_qc: int = 2  # cost networks (OSRL cpq_configs.py num_qc)
    num_ood_samples: int = 10  # actor samples per s tested for OOD (OSRL cpq_configs.py sample_action_num)
    qc_scalar: float = 1.5  # ood_limit = qc_scalar * limit (OSRL cpq_configs.py qc_scalar)
    ood_cost_gradient: bool = True  # False: OSRL's code, whose OOD term never reaches the cost critic (torch.no_grad)
    target_cost: float = 10.0  # kappa: cost per episode (OSRL cpq_configs.py cost_limit)
    max_episode_steps: int = 300  # T in the per-step limit (OSRL cpq_configs.py episode_len; per task there)
    batch_size: int = 512  # OSRL cpq_configs.py
    discount: float = 0.99  # OSRL cpq_configs.py gamma
    tau: float = 0.005  # OSRL cpq_configs.py
    reward_scale: float = 0.1  # rewards are multiplied by this (OSRL cpq_configs.py reward_scale; cost_scale 1)
    normalize_observations: bool = False  # OSRL's TransitionDataset feeds raw states
    normalize_rewards: bool = False  # reward_scale instead


@struct.dataclass
class State:
    vae: TrainState
    actor: TrainState
    critic: TrainState  # reward networks first, then cost networks
    critic_target: dict
    log_alpha: jax.Array
    rng: jax.Array
    num_reward_networks: int = struct.field(pytree_node=False, default=2)  # num_q


def check_config(config: Config) -> None:
    for name in ("num_q", "num_qc", "num_ood_samples", "max_episode_steps"):
        if getattr(config, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} is {getattr(config, name)}; expected a positive integer.")
    if not config.qc_scalar > 0:
        raise ConfigError(f"--qc-scalar is {config.qc_scalar}; expected a positive number.")


def init(key: jax.Array, spec: Spec, config: Config) -> State:
    check_config(config)
    vae_key, actor_key, critic_key, rng = jax.random.split(key, 4)
    # OSRL's SquashedGaussianMLPActor: ReLU layers, log-std clamped to [-20, 2] (net.py LOG_STD_MIN/MAX).
    actor = TanhGaussianPolicy(spec.action_dim, config.hidden_dims, log_std_min=-20.0, log_std_max=2.0)
    actor_params = actor.init(actor_key, jnp.zeros((1, spec.observation_dim)))
    critic, critic_target = reward_and_cost_critics(critic_key, spec, config.hidden_dims, config.num_q, config.num_qc,
                                                    config.critic_learning_rate)
    return State(
        vae=behaviour_vae(vae_key, spec, config),
        actor=TrainState.create(apply_fn=actor.apply, params=actor_params, tx=optax.adam(config.actor_learning_rate)),
        critic=critic, critic_target=critic_target, log_alpha=jnp.zeros((), jnp.float32), rng=rng,
        num_reward_networks=config.num_q,
    )


def policy_samples(state: State, params: dict, observations: jax.Array, key: jax.Array) -> jax.Array:
    return state.actor.apply_fn(params, observations, key, method=TanhGaussianPolicy.sample)[0]


def reward_and_cost_values(state: State, params: dict, observations: jax.Array, actions: jax.Array):
    """Each critic's minimum over its networks (OSRL EnsembleQCritic.predict): (Q_r, Q_c), each (batch,)."""
    values = state.critic.apply_fn(params, observations, actions)
    return values[:state.num_reward_networks].min(axis=0), values[state.num_reward_networks:].min(axis=0)


def critic_targets(state: State, batch: Batch, next_actions: jax.Array, config: Config):
    """(y_r, y_c): the reward target keeps the bootstrap only where Q'_c(s', a') <= limit."""
    next_reward_q, next_cost_q = reward_and_cost_values(state, state.critic_target, batch.next_observations, next_actions)
    continues = config.discount * (1.0 - batch.dones)
    safe_next = (next_cost_q <= cost_q_limit(config)).astype(jnp.float32)
    return (batch.rewards * config.reward_scale + continues * safe_next * next_reward_q,
            batch.costs + continues * next_cost_q)


def ood_mask(state: State, vae_params: dict, observations: jax.Array, actions: jax.Array) -> jax.Array:
    """1.0 where the VAE's posterior KL at (s, a) is at or above the batch's OOD_KL_QUANTILE."""
    kl = state.vae.apply_fn(vae_params, observations, actions, method=ConditionalVAE.posterior_kl)
    return (kl >= jnp.quantile(kl, OOD_KL_QUANTILE)).astype(jnp.float32)


def update(state: State, batch: Batch, config: Config) -> tuple[State, dict[str, jax.Array]]:
    rng, vae_key, next_key, ood_key, actor_key = jax.random.split(state.rng, 5)
    vae, vae_loss = vae_step(state.vae, batch.observations, batch.actions, vae_key, config.beta)
    state = state.replace(vae=vae)

    next_actions = policy_samples(state, state.actor.params, batch.next_observations, next_key)
    reward_target, cost_target = critic_targets(state, batch, next_actions, config)
    ood_observations = jnp.repeat(batch.observations, config.num_ood_samples, axis=0)
    ood_actions = policy_samples(state, state.actor.params, ood_observations, ood_key)
    is_ood = ood_mask(state, vae.params, ood_observations, ood_actions)
    limit = cost_q_limit(config)
    ood_limit = config.qc_scalar * limit
    alpha = jnp.exp(state.log_alpha)

    def critic_loss_fn(params):
        values = state.critic.apply_fn(params, batch.observations, batch.actions)
        reward_loss, cost_loss = bellman_errors(values, reward_target, cost_target, state.num_reward_networks)
        # Zeros for in-distribution samples count in the mean, as OSRL's (mask * qc).mean(0).mean() does.
        ood_cost_q = (is_ood * reward_and_cost_values(state, params, ood_observations, ood_actions)[1]).mean()
        if not config.ood_cost_gradient:
            ood_cost_q = jax.lax.stop_gradient(ood_cost_q)
        return reward_loss + cost_loss - alpha * (ood_cost_q - ood_limit), (reward_loss, cost_loss, ood_cost_q)

    (_, (reward_critic_loss, cost_critic_loss, ood_cost_q)), critic_grads = jax.value_and_grad(
        critic_loss_fn, has_aux=True)(state.critic.params)
    critic = state.critic.apply_gradients(grads=critic_grads)
    log_alpha = jnp.clip(state.log_alpha + config.alpha_learning_rate * alpha * (ood_limit - ood_cost_q), *LOG_ALPHA_BOUNDS)

    def actor_loss_fn(params):
        actions = policy_samples(state, params, batch.observations, actor_key)
        q, cost_q = reward_and_cost_values(state, critic.params, batch.observations, actions)
        deemed_safe = (cost_q <= limit).astype(jnp.float32)
        return -(deemed_safe * q).mean(), (q, cost_q, deemed_safe)

    (actor_loss, (q, cost_q, deemed_safe)), actor_grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(state.actor.params)
    new_state = state.replace(
        actor=state.actor.apply_gradients(grads=actor_grads), critic=critic,
        critic_target=optax.incremental_update(critic.params, state.critic_target, config.tau),
        log_alpha=log_alpha, rng=rng,
    )
    metrics = {
        "vae_loss": vae_loss,
        "critic_loss": reward_critic_loss + cost_critic_loss,  # both Bellman errors, no OOD term (tests/test_critic_targets.py)
        "reward_critic_loss": reward_critic_loss,
        "cost_critic_loss": cost_critic_loss,
        "ood_cost_q": ood_cost_q,
        "alpha": alpha,
        "actor_loss": actor_loss,
        "q_mean": q.mean(),
        "cost_q_mean": cost_q.mean(),
        "deemed_safe_fraction": deemed_safe.mean(),
        "cost_q_limit": jnp.asarray(limit, jnp.float32),
    }
    return new_state, metrics


def act(state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    """tanh of the Gaussian's mean (OSRL evaluates with deterministic=True), or a sample."""
    if deterministic:
        return state.actor.apply_fn(state.actor.params, observations)
    return policy_samples(state, state.actor.params, observations, key)
