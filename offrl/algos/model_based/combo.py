"""COMBO (Yu, Kumar, Rafailov, Rajeswaran, Levine & Finn 2021, "COMBO: Conservative Offline
Model-Based Policy Optimization").

CQL (offrl.algos.model_free.cql) on batches of dataset rows and model-rollout rows, with no
uncertainty penalty on the model's rewards: the critic's Bellman error is taken on every row,
and its conservative term
    weight * (temp * logsumexp_j(Q(s, a_j) / temp) [s ~ rho] - Q(s, a) [(s, a) ~ dataset])
lowers Q on uniform and policy actions (and policy actions drawn at s', all scored at s, as CQL
does) at the states rho and raises it on the dataset's own (s, a) pairs only. rho is the paper's
choice: `conservative_states="model"` takes the model-rollout rows; the OfflineRL-Kit default
`"mix"` takes every row of the mixed batch. The engine (offrl/train/model_rollouts.py) runs the
rollouts and puts the `real_ratio` dataset rows first in each batch.

Defaults are OfflineRL-Kit's run_example/run_combo.py and policy/model_based/combo.py (rollout
length and CQL weight per dataset are presets, offrl/train/presets/combo.json). As there, the
actor and temperature step first (against the critic before its step) and the critic's samples
come from the updated actor. Differences, said rather than hidden: the logsumexp runs over all 3N
samples per state (combo.py's comment; its non-in-place reshape makes it a logsumexp over 3
values for each of N rows); the Lagrange form is offrl CQL's weight * alpha' * (gap - target)
(combo.py: alpha' * (weight * gap - threshold)); the actor's cosine learning-rate decay and
`--uniform-rollout` (rollouts with random actions, off by default) are not applied.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import struct

from offrl.algos.model_free import cql
from offrl.errors import ConfigError
from offrl.models.buffer import ModelBuffer, RolloutSettings, empty_model_buffer
from offrl.types import Batch, Spec

NAME = "combo"
DESCRIPTION = "COMBO: CQL on dataset + model-rollout batches, Q pushed down at model states and up on dataset pairs."
PAPER = "Yu et al. 2021, COMBO: Conservative Offline Model-Based Policy Optimization"

CONSERVATIVE_STATES = ("mix", "model")


@dataclass(frozen=True)
class Config:
    actor_learning_rate: float = 1e-4  # run_combo.py --actor-lr
    critic_learning_rate: float = 3e-4  # run_combo.py --critic-lr
    temperature_learning_rate: float = 1e-4  # run_combo.py --alpha-lr (--auto-alpha True)
    lagrange_learning_rate: float = 3e-4  # run_combo.py --cql-alpha-lr (only with lagrange)
    hidden_dims: tuple[int, ...] = (256, 256, 256)  # run_combo.py --hidden-dims
    batch_size: int = 256  # run_combo.py --batch-size
    discount: float = 0.99  # run_combo.py --gamma
    tau: float = 5e-3  # run_combo.py --tau
    cql_weight: float = 5.0  # beta, run_combo.py --cql-weight (per dataset: presets)
    cql_temperature: float = 1.0  # run_combo.py --temperature
    num_sampled_actions: int = 10  # run_combo.py --num-repeat-actions
    conservative_states: str = "mix"  # rho's states: run_combo.py --rho-s ("mix": the whole batch; "model": rollout rows)
    lagrange: bool = False  # run_combo.py --with-lagrange
    target_action_gap: float = 10.0  # run_combo.py --lagrange-threshold (only with lagrange)
    deterministic_backup: bool = True  # run_combo.py --deterministic-backup: no -alpha log pi in the target
    max_q_backup: bool = False  # run_combo.py --max-q-backup: min_i max_j Q'_i(s', a'_j) over the N next-state samples
    init_temperature: float = 1.0  # log_alpha starts at 0 (run_combo.py)
    target_entropy: float | None = None  # None: -action_dim (run_combo.py --target-entropy)
    normalize_observations: bool = False  # run_combo.py trains on raw states
    normalize_rewards: bool = False
    horizon: int = 5  # rollout length h, run_combo.py --rollout-length (per dataset: presets)
    rollout_batch: int = 50_000  # run_combo.py --rollout-batch-size
    rollout_every: int = 1_000  # updates between rollout rounds, run_combo.py --rollout-freq
    real_ratio: float = 0.5  # dataset share of each batch, run_combo.py --real-ratio
    model_buffer_capacity: int = 1_250_000  # rollout-batch-size x rollout-length x model-retain-epochs 5 (run_combo.py)
    dynamics_num_models: int = 7  # run_combo.py --n-ensemble
    dynamics_num_elites: int = 5  # run_combo.py --n-elites
    dynamics_hidden_dims: tuple[int, ...] = (200, 200, 200, 200)  # run_combo.py --dynamics-hidden-dims
    dynamics_weight_decay: tuple[float, ...] = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)  # per layer, run_combo.py
    dynamics_max_epochs: int = 0  # 0: train until 5 epochs without improvement (run_combo.py max_epochs_since_update=5)
    termination: str = "env"  # "env": the env's termination function; "learned": the model's terminal head; "never": time limits only
    model_path: str | None = None  # a model directory from `offrl models train`; None: the cache for this dataset
    retrain_model: bool = False  # train a fresh model even if the cache holds one

    def __post_init__(self):
        if not self.cql_weight >= 0:
            raise ConfigError(f"--cql-weight is {self.cql_weight}; expected a number >= 0.")
        if not self.cql_temperature > 0:
            raise ConfigError(f"--cql-temperature is {self.cql_temperature}; expected a positive number.")
        if self.num_sampled_actions <= 0:
            raise ConfigError(f"--num-sampled-actions is {self.num_sampled_actions}; expected a positive integer.")
        if self.conservative_states not in CONSERVATIVE_STATES:
            raise ConfigError(f"--conservative-states is {self.conservative_states!r}; expected 'mix' or 'model'.")
        real = real_rows(self.batch_size, self.real_ratio)
        if not 0.0 <= self.real_ratio <= 1.0 or real == 0:
            raise ConfigError(f"--real-ratio is {self.real_ratio}; expected a share in (0, 1] that gives --batch-size "
                              f"{self.batch_size} at least one dataset row (COMBO raises Q on dataset pairs).")
        if self.conservative_states == "model" and real == self.batch_size:
            raise ConfigError(f"--real-ratio is {self.real_ratio}; expected a share that leaves model rows in each batch "
                              f"of {self.batch_size} (--conservative-states model lowers Q at model states).")


@struct.dataclass
class State:
    agent: cql.State
    model_buffer: ModelBuffer


def real_rows(batch_rows: int, real_ratio: float) -> int:
    """Dataset rows at the head of a batch: the engine's mixed_batch takes round(batch * real_ratio)."""
    return int(round(batch_rows * real_ratio))


def rollout_settings(config: Config) -> RolloutSettings:
    # No dynamics penalty: COMBO's conservatism is the critic's (combo.py rolls out the model's own reward).
    return RolloutSettings(horizon=config.horizon, rollout_batch=config.rollout_batch, rollout_every=config.rollout_every,
                           real_ratio=config.real_ratio, capacity=config.model_buffer_capacity, penalty_coef=0.0)


def init(key: jax.Array, spec: Spec, config: Config) -> State:
    return State(agent=cql.init(key, spec, config),
                 model_buffer=empty_model_buffer(spec.observation_dim, spec.action_dim, config.model_buffer_capacity))


def backup_q(agent: cql.State, batch: Batch, samples: cql.PolicySamples, config: Config) -> jax.Array:
    """Q'(s', a') for the Bellman target (combo.py learn): one a' ~ pi(.|s') (the first of the N
    samples), min over the target critics, minus alpha log pi unless the backup is deterministic;
    with `max_q_backup`, each critic's max over the N samples, then the min over critics."""
    batch_size = batch.observations.shape[0]
    if config.max_q_backup:
        n = config.num_sampled_actions
        tiled = jnp.broadcast_to(batch.next_observations, (n, *batch.next_observations.shape)).reshape(n * batch_size, -1)
        q = agent.critic.apply_fn(agent.critic_target, tiled, samples.next_actions)
        return q.reshape(q.shape[0], n, batch_size).max(axis=1).min(axis=0)
    next_q = agent.critic.apply_fn(agent.critic_target, batch.next_observations, samples.next_actions[:batch_size]).min(axis=0)
    if not config.deterministic_backup:
        alpha = jnp.exp(agent.temperature.apply_fn(agent.temperature.params))
        next_q = next_q - alpha * samples.next_log_probs[:batch_size]
    return next_q


def update(state: State, batch: Batch, config: Config) -> tuple[State, dict[str, jax.Array]]:
    agent = state.agent
    rng, actor_key, policy_key, uniform_key = jax.random.split(agent.rng, 4)
    batch_size, action_dim = batch.actions.shape
    real = real_rows(batch_size, config.real_ratio)

    # combo.py learn: actor, then temperature, on the whole mixed batch against the critic before its step.
    agent, actor_metrics, log_probs = cql.actor_step(agent, batch.observations, actor_key)
    agent, temperature_metrics = cql.temperature_step(agent, log_probs, action_dim, config)

    samples = cql.sample_policy_actions(agent, batch, policy_key, config.num_sampled_actions)  # the updated actor's
    target_q = batch.rewards + config.discount * (1.0 - batch.dones) * backup_q(agent, batch, samples, config)
    pushed_down = slice(real, None) if config.conservative_states == "model" else slice(None)
    agent, critic_metrics = cql.conservative_critic_step(agent, batch, config, samples, uniform_key, target_q,
                                                         pushed_down=pushed_down, pushed_up=slice(0, real))
    return state.replace(agent=agent.replace(rng=rng)), {**critic_metrics, **actor_metrics, **temperature_metrics}


def act(state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    return cql.act(state.agent, observations, key, deterministic)
