"""Cal-QL (Nakamoto, Zhai, Singh, Sodhani, Finn, Levine & Kumar, 2023, "Cal-QL: Calibrated
Offline RL Pre-Training for Efficient Online Fine-Tuning").

CQL whose conservative penalty cannot push Q on policy actions below the value of the behaviour
policy: in the logsumexp, every Q(s, a ~ pi) is replaced by max(Q(s, a ~ pi), V_mu(s)), where
V_mu(s) is the Monte-Carlo return-to-go of the dataset transition at s (the `mc_returns` field
the engine provides, see offrl.train.extra_fields). Q-values pinned at the bound get no gradient
from the penalty, so the learned Q stays on the scale of real returns and fine-tuning does not
start with the "unlearning" dip of CQL. As in the reference code (nakamotoo/Cal-QL
`conservative_sac.py`) the bound applies to the N policy samples at s and the N at s' (all
scored at s), before the importance weights; the uniform samples stay unbounded.

Online rows get their return-to-go when their episode finishes (the reference's TrajSampler
does the same, whole trajectories at a time); until then they hold -inf, i.e. plain CQL for
that row. A Batch without `mc_returns` (an engine that does not know EXTRA_FIELDS) is trained
as plain CQL, never with a made-up bound.

Defaults are the reference's ConservativeSAC defaults and flags (conservative_sac.py,
conservative_sac_main.py): policy lr 1e-4, Q lr 3e-4, 2x256 networks, min_q_weight 5.0,
10 sampled actions, no Lagrange, no entropy backup, mixing ratio 0.5 online.

The Bellman backup is the one exception: by default it follows CORL's cal_ql.py
(cql_max_target_backup False), a single next action a' ~ pi(.|s'), y = r + gamma * min_i Q'_i(s', a').
The authors' ConservativeSAC defaults to cql_max_target_backup True: the max over the N sampled
next actions of the min over the critics, y = r + gamma * max_j min_i Q'_i(s', a'_j);
`max_target_backup=True` selects it (it reuses the penalty's N next-state samples).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import optax

from offrl.algos.model_free import cql
from offrl.types import Batch, Spec

NAME = "calql"
DESCRIPTION = "Cal-QL: CQL with the penalty's policy Q-values lower-bounded by Monte-Carlo returns."
PAPER = "Nakamoto et al. 2023, Cal-QL: Calibrated Offline RL Pre-Training for Efficient Online Fine-Tuning"

EXTRA_FIELDS = ("mc_returns",)

State = cql.State
act = cql.act


@dataclass(frozen=True)
class Config:
    actor_learning_rate: float = 1e-4  # reference ConservativeSAC policy_lr
    critic_learning_rate: float = 3e-4  # reference qf_lr
    temperature_learning_rate: float | None = None  # None: the actor's lr (reference: log_alpha optimiser uses policy_lr)
    lagrange_learning_rate: float = 3e-4  # reference: alpha' optimiser uses qf_lr (unused without lagrange)
    hidden_dims: tuple[int, ...] = (256, 256)  # reference policy_arch / qf_arch '256-256'
    batch_size: int = 256  # reference batch_size
    discount: float = 0.99  # reference discount; also the discount of the MC returns
    tau: float = 0.005  # reference soft_target_update_rate
    cql_weight: float = 5.0  # reference cql_min_q_weight
    cql_temperature: float = 1.0  # reference cql_temp
    num_sampled_actions: int = 10  # reference cql_n_actions
    lagrange: bool = False  # reference cql_lagrange
    target_action_gap: float = 1.0  # reference cql_target_action_gap (only with lagrange)
    max_target_backup: bool = False  # CORL cal_ql.py cql_max_target_backup False (authors' conservative_sac.py: True)
    init_temperature: float = 1.0  # reference: log_alpha starts at 0
    target_entropy: float | None = None  # None: -action_dim (reference)
    normalize_observations: bool = False  # the reference does not standardise states
    normalize_rewards: bool = False  # reference reward_scale 1, reward_bias 0 for locomotion


def init(key: jax.Array, spec: Spec, config: Config) -> State:
    return cql.init(key, spec, config)


def calibrate(q_policy: jax.Array, lower_bounds: jax.Array | None) -> jax.Array:
    """max(Q, V_mc) for Q-values of policy actions, shaped (critics, samples, batch); bounds (batch,)."""
    if lower_bounds is None:
        return q_policy
    return jnp.maximum(q_policy, lower_bounds[None, None, :])


def backup_value(state: State, next_observations: jax.Array, next_actions: jax.Array, config: Config) -> jax.Array:
    """min_i Q'_i(s', a'_0), or with `max_target_backup` max_j min_i Q'_i(s', a'_j), shape (batch,).

    next_actions: (N * batch, action_dim), sample-major (the j-th block of `batch` rows is a'_j).
    """
    batch_size = next_observations.shape[0]
    if not config.max_target_backup:
        return state.critic.apply_fn(state.critic_target, next_observations, next_actions[:batch_size]).min(axis=0)
    samples = next_actions.shape[0] // batch_size
    tiled = jnp.broadcast_to(next_observations, (samples, *next_observations.shape)).reshape(samples * batch_size, -1)
    q = state.critic.apply_fn(state.critic_target, tiled, next_actions).min(axis=0)
    return q.reshape(samples, batch_size).max(axis=0)


def update(state: State, batch: Batch, config: Config) -> tuple[State, dict[str, jax.Array]]:
    rng, policy_key, uniform_key, actor_key = jax.random.split(state.rng, 4)
    batch_size, action_dim = batch.actions.shape
    n = config.num_sampled_actions
    alpha = jnp.exp(state.temperature.apply_fn(state.temperature.params))

    tile = lambda x: jnp.broadcast_to(x, (n, *x.shape)).reshape(n * batch_size, -1)  # noqa: E731
    policy_actions, policy_log_probs = jax.lax.stop_gradient(cql._sample(
        state.actor, state.actor.params,
        jnp.concatenate([tile(batch.observations), tile(batch.next_observations)]), policy_key,
    ))
    current_actions, next_actions = jnp.split(policy_actions, 2)
    current_log_probs, next_log_probs = jnp.split(policy_log_probs, 2)

    # Deterministic backup (reference backup_entropy False); single-sample or max backup, see the docstring.
    next_q = backup_value(state, batch.next_observations, next_actions, config)
    target_q = batch.rewards + config.discount * (1.0 - batch.dones) * next_q

    uniform_actions = jax.random.uniform(uniform_key, (n * batch_size, action_dim), minval=-1.0, maxval=1.0)
    all_observations = jnp.concatenate([tile(batch.observations)] * 3 + [batch.observations])
    all_actions = jnp.concatenate([uniform_actions, current_actions, next_actions, batch.actions])
    uniform_importance = action_dim * jnp.log(2.0)  # -log density of U[-1, 1]^d
    policy_importance = -jnp.concatenate([current_log_probs, next_log_probs]).reshape(2 * n, batch_size)
    lagrange_multiplier = jnp.clip(jnp.exp(state.lagrange.apply_fn(state.lagrange.params)), 0.0, 1e6)
    bounds = batch.mc_returns

    def critic_loss_fn(params):
        q_all = state.critic.apply_fn(params, all_observations, all_actions)
        q_uniform = q_all[:, : n * batch_size].reshape(-1, n, batch_size)
        q_policy = q_all[:, n * batch_size : 3 * n * batch_size].reshape(-1, 2 * n, batch_size)
        q_data = q_all[:, 3 * n * batch_size :]
        q_sampled = jnp.concatenate(
            [q_uniform + uniform_importance, calibrate(q_policy, bounds) + policy_importance], axis=1
        )
        bellman_loss = ((q_data - target_q) ** 2).mean(axis=1).sum()
        gap = cql.conservative_penalty(q_sampled, q_data, config.cql_temperature)
        if config.lagrange:
            penalty = (lagrange_multiplier * config.cql_weight * (gap - config.target_action_gap)).sum()
        else:
            penalty = (config.cql_weight * gap).sum()
        below = jnp.nan if bounds is None else (q_policy < bounds[None, None, :]).mean()
        return bellman_loss + penalty, (bellman_loss, penalty, gap, q_data, q_uniform.mean(), below)

    (critic_loss, (bellman_loss, penalty, gap, q_data, q_uniform, bound_rate)), grads = jax.value_and_grad(
        critic_loss_fn, has_aux=True
    )(state.critic.params)
    critic = state.critic.apply_gradients(grads=grads)
    critic_target = optax.incremental_update(critic.params, state.critic_target, config.tau)

    if config.lagrange:
        def lagrange_loss_fn(params):
            multiplier = jnp.clip(jnp.exp(state.lagrange.apply_fn(params)), 0.0, 1e6)
            return -(multiplier * config.cql_weight * (jax.lax.stop_gradient(gap) - config.target_action_gap)).mean()

        lagrange_loss, lagrange_grads = jax.value_and_grad(lagrange_loss_fn)(state.lagrange.params)
        lagrange = state.lagrange.apply_gradients(grads=lagrange_grads)
    else:
        lagrange_loss, lagrange = jnp.full((), jnp.nan), state.lagrange

    def actor_loss_fn(params):
        actions, log_probs = cql._sample(state.actor, params, batch.observations, actor_key)
        q_pi = critic.apply_fn(critic.params, batch.observations, actions).min(axis=0)
        return (alpha * log_probs - q_pi).mean(), log_probs

    (actor_loss, log_probs), actor_grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(state.actor.params)
    actor = state.actor.apply_gradients(grads=actor_grads)

    entropy = -jax.lax.stop_gradient(log_probs).mean()
    goal = -float(action_dim) if config.target_entropy is None else float(config.target_entropy)
    temperature_loss, temperature_grads = jax.value_and_grad(
        lambda params: state.temperature.apply_fn(params) * (entropy - goal)
    )(state.temperature.params)
    temperature = state.temperature.apply_gradients(grads=temperature_grads)

    new_state = cql.State(
        actor=actor, critic=critic, critic_target=critic_target, temperature=temperature, lagrange=lagrange, rng=rng
    )
    metrics = {
        "critic_loss": critic_loss,
        "bellman_loss": bellman_loss,
        "cql_penalty": penalty,
        "cql_gap": gap.mean(),
        "bound_rate": jnp.asarray(bound_rate, jnp.float32),  # share of policy Q-values below the MC bound
        "actor_loss": actor_loss,
        "alpha": alpha,
        "lagrange_loss": lagrange_loss,
        "entropy": entropy,
        "q_data_mean": q_data.mean(),
        "q_uniform_mean": q_uniform,
    }
    return new_state, metrics


# Online fine-tuning settings (offrl.train.finetune): the reference keeps the calibration on online
# (enable_calql for the whole run) and mixes 50/50 (scripts/run_antmaze.sh --mixing_ratio=0.5);
# everything else stays as pre-trained.
FINETUNE = {
    "config": {},
    "offline_ratio": 0.5,
}
