"""MOPO (Yu et al. 2020, "MOPO: Model-based Offline Policy Optimization").

SAC on a mix of dataset transitions and h-step rollouts of a learned dynamics ensemble, whose
rewards are penalised by the ensemble's uncertainty:
    r~(s, a) = r^(s, a) - lambda * max_i ||Sigma_i(s, a)||_F
(the largest predicted standard deviation over the elites; `uncertainty="disagreement"` uses the
authors' code's other penalty, the largest distance of an elite's predicted next state from the
elites' average). The rollouts, the penalty and the
real/model batch mixing are the engine's (offrl/train/model_rollouts.py): this module is the
agent (SAC with two critics and a learned temperature, offrl.algos.model_free.sac_n's update)
and the settings. Defaults are OfflineRL-Kit's run_example/run_mopo.py (the authors' settings
on D4RL gym; rollout length h and penalty lambda per dataset are presets, offrl/train/presets/mopo.json).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
from flax import struct

from offrl.algos.model_free import sac_n
from offrl.models.buffer import ModelBuffer, RolloutSettings, empty_model_buffer
from offrl.types import Batch, Spec

NAME = "mopo"
DESCRIPTION = "MOPO: SAC on model rollouts with an uncertainty-penalised reward."
PAPER = "Yu et al. 2020, MOPO: Model-based Offline Policy Optimization"


@dataclass(frozen=True)
class Config:
    actor_learning_rate: float = 1e-4  # run_mopo.py --actor-lr
    critic_learning_rate: float = 3e-4  # run_mopo.py --critic-lr
    temperature_learning_rate: float = 1e-4  # run_mopo.py --alpha-lr (auto-alpha)
    hidden_dims: tuple[int, ...] = (256, 256)  # run_mopo.py --hidden-dims
    num_critics: int = 2  # SAC's twin critics (MOPOPolicy: critic1, critic2)
    batch_size: int = 256
    discount: float = 0.99
    tau: float = 5e-3
    init_temperature: float = 1.0  # log_alpha initialised at 0 (run_mopo.py)
    target_entropy: float | None = None  # None: -action_dim (run_mopo.py)
    normalize_observations: bool = False  # run_mopo.py trains on raw states
    normalize_rewards: bool = False
    horizon: int = 5  # rollout length h, run_mopo.py --rollout-length (per dataset: presets)
    rollout_batch: int = 50_000  # rollouts per rollout round, run_mopo.py --rollout-batch-size
    rollout_every: int = 1_000  # updates between rounds, run_mopo.py --rollout-freq
    real_ratio: float = 0.05  # dataset share of each batch, run_mopo.py --real-ratio
    model_buffer_capacity: int = 1_250_000  # rollout-batch-size x rollout-length x model-retain-epochs 5 (run_mopo.py)
    penalty_coef: float = 0.5  # lambda, run_mopo.py --penalty-coef (per dataset: presets)
    # "aleatoric": max_i ||std_i|| (tianheyu927/mopo examples/config/d4rl/base_mopo.py penalty_learned_var True);
    # "disagreement": max_i ||mu_i - mean_j mu_j|| over next states (mopo fake_env.py, penalty_learned_var False)
    uncertainty: str = "aleatoric"
    dynamics_num_models: int = 7  # run_mopo.py --n-ensemble
    dynamics_num_elites: int = 5  # run_mopo.py --n-elites
    dynamics_hidden_dims: tuple[int, ...] = (200, 200, 200, 200)  # run_mopo.py --dynamics-hidden-dims
    dynamics_weight_decay: tuple[float, ...] = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)  # per layer, run_mopo.py
    dynamics_max_epochs: int = 0  # 0: train until 5 epochs without improvement (run_mopo.py)
    termination: str = "env"  # "env": the env's termination function; "learned": the model's terminal head; "never": time limits only
    model_path: str | None = None  # a model directory from `offrl models train`; None: the cache for this dataset
    retrain_model: bool = False  # train a fresh model even if the cache holds one


@struct.dataclass
class State:
    agent: sac_n.State
    model_buffer: ModelBuffer


def rollout_settings(config: Config) -> RolloutSettings:
    return RolloutSettings(horizon=config.horizon, rollout_batch=config.rollout_batch, rollout_every=config.rollout_every,
                           real_ratio=config.real_ratio, capacity=config.model_buffer_capacity,
                           penalty_coef=config.penalty_coef, uncertainty=config.uncertainty)


def init(key: jax.Array, spec: Spec, config: Config) -> State:
    return State(agent=sac_n.init(key, spec, config),
                 model_buffer=empty_model_buffer(spec.observation_dim, spec.action_dim, config.model_buffer_capacity))


def update(state: State, batch: Batch, config: Config) -> tuple[State, dict[str, jax.Array]]:
    agent, metrics = sac_n.ensemble_sac_update(state.agent, batch, config)
    return state.replace(agent=agent), metrics


def act(state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    return sac_n.act(state.agent, observations, key, deterministic)
