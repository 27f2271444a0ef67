"""Conservative Q-Learning (Kumar, Zhou, Tucker & Levine, 2020), continuous CQL(H) on SAC.

SAC's critic loss plus a penalty that pushes Q down on actions the policy or a uniform
distribution proposes and up on the dataset's actions:
    penalty = weight * (temp * logsumexp_j(Q(s, a_j) / temp) - Q(s, a_data))
The logsumexp is importance-sampled (CQL(H), "min_q_version 3" in the reference code) over
N uniform actions, N policy actions at s and N policy actions at s' (all scored at s):
    [Q(s, a_unif) - log(0.5^d), Q(s, a~pi(s)) - log pi(a|s), Q(s, a'~pi(s')) - log pi(a'|s')]
With `lagrange` the weight becomes weight * alpha' with alpha' tuned so the penalty's gap
stays at `target_action_gap` (the paper's "CQL(H) with Lagrange", used there for AntMaze).
Defaults are the reference code's D4RL gym settings (aviralkumar2/CQL README, cql_mujoco_new.py):
policy lr 1e-4, Q lr 3e-4, min_q_weight 5.0, 10 sampled actions, no Lagrange,
deterministic backup (no entropy bonus in the target), three hidden layers of 256.
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

NAME = "cql"
DESCRIPTION = "Conservative Q-Learning: SAC with a logsumexp penalty on out-of-distribution Q-values."
PAPER = "Kumar, Zhou, Tucker & Levine 2020, Conservative Q-Learning for Offline Reinforcement Learning"


@dataclass(frozen=True)
class Config:
    actor_learning_rate: float = 1e-4  # reference README for gym: --policy_lr=1e-4 (CORL uses 3e-5)
    critic_learning_rate: float = 3e-4  # reference qf_lr
    temperature_learning_rate: float | None = None  # None: the actor's lr (CORL cql.py: alpha_optimizer lr=policy_lr)
    lagrange_learning_rate: float = 3e-4  # alpha' optimiser (reference and CORL: the Q lr)
    hidden_dims: tuple[int, ...] = (256, 256, 256)  # reference cql_mujoco_new.py: [M, M, M], M = 256
    batch_size: int = 256
    discount: float = 0.99
    tau: float = 0.005  # reference soft_target_tau
    cql_weight: float = 5.0  # reference README for gym: --min_q_weight=5.0 (CORL's gym configs use 10.0)
    cql_temperature: float = 1.0  # reference temp
    num_sampled_actions: int = 10  # reference num_random
    lagrange: bool = False  # reference README for gym: --lagrange_thresh=-1 (off)
    target_action_gap: float = 5.0  # reference README for AntMaze: --lagrange_thresh=5.0
    init_temperature: float = 1.0
    target_entropy: float | None = None  # None: -action_dim (SAC heuristic)
    normalize_observations: bool = False  # the reference code does not normalise states
    normalize_rewards: bool = False


@struct.dataclass
class State:
    actor: TrainState
    critic: TrainState
    critic_target: dict
    temperature: TrainState
    lagrange: TrainState
    rng: jax.Array


def init(key: jax.Array, spec: Spec, config: Config) -> State:
    actor_key, critic_key, rng = jax.random.split(key, 3)
    observation = jnp.zeros((1, spec.observation_dim))
    action = jnp.zeros((1, spec.action_dim))
    actor = TanhGaussianPolicy(spec.action_dim, config.hidden_dims)
    critic = CriticEnsemble(config.hidden_dims, num_critics=2)
    critic_params = critic.init(critic_key, observation, action)
    temperature, lagrange = LogScalar(config.init_temperature), LogScalar(1.0)
    return State(
        actor=TrainState.create(apply_fn=actor.apply, params=actor.init(actor_key, observation), tx=optax.adam(config.actor_learning_rate)),
        critic=TrainState.create(apply_fn=critic.apply, params=critic_params, tx=optax.adam(config.critic_learning_rate)),
        critic_target=critic_params,
        temperature=TrainState.create(apply_fn=temperature.apply, params=temperature.init(rng), tx=optax.adam(temperature_lr(config))),
        lagrange=TrainState.create(apply_fn=lagrange.apply, params=lagrange.init(rng), tx=optax.adam(config.lagrange_learning_rate)),
        rng=rng,
    )


def temperature_lr(config) -> float:
    """The temperature's learning rate: its own if set, else the actor's (CORL cql.py, Cal-QL's conservative_sac.py)."""
    return config.actor_learning_rate if config.temperature_learning_rate is None else config.temperature_learning_rate


def _sample(actor: TrainState, params: dict, observations: jax.Array, key: jax.Array):
    return actor.apply_fn(params, observations, key, method=TanhGaussianPolicy.sample)


def conservative_penalty(q_sampled: jax.Array, q_data: jax.Array, temperature: float) -> jax.Array:
    """Per-critic temp * logsumexp over sampled (already importance-corrected) Q-values minus Q on data.

    q_sampled: (num_critics, num_samples, rows); q_data: (num_critics, data rows). Returns (num_critics,).
    Minimising it lowers Q where the sampled actions are and raises it on the dataset's actions;
    the two sets of rows may differ (COMBO pushes down at model states, up on dataset pairs).
    """
    logsumexp = temperature * jax.nn.logsumexp(q_sampled / temperature, axis=1)
    return logsumexp.mean(axis=-1) - q_data.mean(axis=-1)


@struct.dataclass
class PolicySamples:
    """N policy actions (no gradient) at each row's s and N at its s', sample-major: row j * batch + b."""

    current_actions: jax.Array
    current_log_probs: jax.Array
    next_actions: jax.Array
    next_log_probs: jax.Array


def sample_policy_actions(state: State, batch: Batch, key: jax.Array, n: int) -> PolicySamples:
    """One policy call samples N actions at s and N at s' for every row of the batch."""
    batch_size = batch.observations.shape[0]
    tile = lambda x: jnp.broadcast_to(x, (n, *x.shape)).reshape(n * batch_size, -1)  # noqa: E731
    actions, log_probs = jax.lax.stop_gradient(_sample(
        state.actor, state.actor.params,
        jnp.concatenate([tile(batch.observations), tile(batch.next_observations)]), key,
    ))
    current_actions, next_actions = jnp.split(actions, 2)
    current_log_probs, next_log_probs = jnp.split(log_probs, 2)
    return PolicySamples(current_actions, current_log_probs, next_actions, next_log_probs)


def conservative_critic_step(state: State, batch: Batch, config, samples: PolicySamples, uniform_key: jax.Array,
                             target_q: jax.Array, pushed_down: slice = slice(None),
                             pushed_up: slice = slice(None)) -> tuple[State, dict[str, jax.Array]]:
    """One step of the critics (and of alpha' with `lagrange`): the Bellman error on every row plus
    the CQL(H) penalty, whose logsumexp lowers Q at the states of the `pushed_down` rows (N uniform
    actions, N policy actions at s and N at s', all scored at s) and whose data term raises
    Q(s, a) on the `pushed_up` rows. CQL uses every row for both."""
    batch_size, action_dim = batch.actions.shape
    n = config.num_sampled_actions

    def down_rows(sample_major):  # (n * batch, ...) -> the pushed-down rows of each sample block
        blocks = sample_major.reshape(n, batch_size, *sample_major.shape[1:])[:, pushed_down]
        return blocks.reshape(-1, *sample_major.shape[1:])

    observations = batch.observations[pushed_down]
    rows = observations.shape[0]
    uniform_actions = jax.random.uniform(uniform_key, (n * batch_size, action_dim), minval=-1.0, maxval=1.0)
    # Every Q evaluation of the critic loss in one ensemble call: 3N sampled actions per pushed-down state + the batch.
    tiled = jnp.broadcast_to(observations, (n, *observations.shape)).reshape(n * rows, -1)
    all_observations = jnp.concatenate([tiled] * 3 + [batch.observations])
    all_actions = jnp.concatenate([down_rows(uniform_actions), down_rows(samples.current_actions),
                                   down_rows(samples.next_actions), batch.actions])
    importance = jnp.concatenate([
        jnp.full((n * rows,), action_dim * jnp.log(2.0)),  # -log density of U[-1, 1]^d
        -down_rows(samples.current_log_probs),
        -down_rows(samples.next_log_probs),
    ]).reshape(3 * n, rows)
    lagrange_multiplier = jnp.clip(jnp.exp(state.lagrange.apply_fn(state.lagrange.params)), 0.0, 1e6)

    def critic_loss_fn(params):
        q_all = state.critic.apply_fn(params, all_observations, all_actions)
        q_sampled = q_all[:, : 3 * n * rows].reshape(-1, 3 * n, rows) + importance
        q_data = q_all[:, 3 * n * rows :]
        bellman_loss = ((q_data - target_q) ** 2).mean(axis=1).sum()
        gap = conservative_penalty(q_sampled, q_data[:, pushed_up], config.cql_temperature)  # (num_critics,)
        if config.lagrange:
            penalty = (lagrange_multiplier * config.cql_weight * (gap - config.target_action_gap)).sum()
        else:
            penalty = (config.cql_weight * gap).sum()
        q_uniform = q_all[:, : n * rows].mean()
        return bellman_loss + penalty, (bellman_loss, penalty, gap, q_data, q_uniform)

    (critic_loss, (bellman_loss, penalty, gap, q_data, q_uniform)), grads = jax.value_and_grad(
        critic_loss_fn, has_aux=True
    )(state.critic.params)
    critic = state.critic.apply_gradients(grads=grads)
    critic_target = optax.incremental_update(critic.params, state.critic_target, config.tau)

    def lagrange_loss_fn(params):
        multiplier = jnp.clip(jnp.exp(state.lagrange.apply_fn(params)), 0.0, 1e6)
        # alpha' grows while the gap exceeds the target (reference: loss = -penalty, averaged over critics).
        return -(multiplier * config.cql_weight * (jax.lax.stop_gradient(gap) - config.target_action_gap)).mean()

    if config.lagrange:
        lagrange_loss, lagrange_grads = jax.value_and_grad(lagrange_loss_fn)(state.lagrange.params)
        lagrange = state.lagrange.apply_gradients(grads=lagrange_grads)
    else:
        lagrange_loss, lagrange = jnp.full((), jnp.nan), state.lagrange

    metrics = {
        "critic_loss": critic_loss,
        "bellman_loss": bellman_loss,
        "cql_penalty": penalty,
        "cql_gap": gap.mean(),
        "lagrange_multiplier": lagrange_multiplier,
        "lagrange_loss": lagrange_loss,
        "q_data_mean": q_data.mean(),
        "q_uniform_mean": q_uniform,
    }
    return state.replace(critic=critic, critic_target=critic_target, lagrange=lagrange), metrics


def actor_step(state: State, observations: jax.Array, key: jax.Array) -> tuple[State, dict[str, jax.Array], jax.Array]:
    """SAC's actor step against the state's critic: minimise alpha * log pi(a|s) - min_i Q_i(s, a).
    Returns the log-probabilities of its actions for the temperature step."""
    alpha = jnp.exp(state.temperature.apply_fn(state.temperature.params))

    def actor_loss_fn(params):
        actions, log_probs = _sample(state.actor, params, observations, key)
        q_pi = state.critic.apply_fn(state.critic.params, observations, actions).min(axis=0)
        return (alpha * log_probs - q_pi).mean(), log_probs

    (actor_loss, log_probs), actor_grads = jax.value_and_grad(actor_loss_fn, has_aux=True)(state.actor.params)
    actor = state.actor.apply_gradients(grads=actor_grads)
    return state.replace(actor=actor), {"actor_loss": actor_loss, "alpha": alpha}, log_probs


def temperature_step(state: State, log_probs: jax.Array, action_dim: int, config) -> tuple[State, dict[str, jax.Array]]:
    """log alpha moves to bring the policy's entropy to the target (-action_dim unless set)."""
    entropy = -jax.lax.stop_gradient(log_probs).mean()
    goal = -float(action_dim) if config.target_entropy is None else float(config.target_entropy)
    _, temperature_grads = jax.value_and_grad(
        lambda params: state.temperature.apply_fn(params) * (entropy - goal)
    )(state.temperature.params)
    return state.replace(temperature=state.temperature.apply_gradients(grads=temperature_grads)), {"entropy": entropy}


def update(state: State, batch: Batch, config: Config) -> tuple[State, dict[str, jax.Array]]:
    rng, policy_key, uniform_key, actor_key = jax.random.split(state.rng, 4)
    batch_size, action_dim = batch.actions.shape
    samples = sample_policy_actions(state, batch, policy_key, config.num_sampled_actions)

    # Bellman target: the first of the N next-state samples is an ordinary draw from pi(.|s').
    # Deterministic backup (no -alpha log pi term), as in the reference code for gym.
    next_q = state.critic.apply_fn(state.critic_target, batch.next_observations, samples.next_actions[:batch_size]).min(axis=0)
    target_q = batch.rewards + config.discount * (1.0 - batch.dones) * next_q

    state, critic_metrics = conservative_critic_step(state, batch, config, samples, uniform_key, target_q)
    state, actor_metrics, log_probs = actor_step(state, batch.observations, actor_key)  # against the updated critic
    state, temperature_metrics = temperature_step(state, log_probs, action_dim, config)
    return state.replace(rng=rng), {**critic_metrics, **actor_metrics, **temperature_metrics}


def act(state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    if deterministic:
        return state.actor.apply_fn(state.actor.params, observations)
    actions, _ = _sample(state.actor, state.actor.params, observations, key)
    return actions


# Online fine-tuning settings (offrl.train.finetune). CORL's algorithms/finetune/cql.py keeps every
# offline hyperparameter online (cql_alpha_online = cql_alpha) and collects with policy samples;
# batches mix offline and online data 50/50, the mixing Cal-QL (Nakamoto et al. 2023) uses for
# both CQL and Cal-QL (CORL cal_ql.py mixing_ratio 0.5).
FINETUNE = {
    "config": {},
    "offline_ratio": 0.5,
}
