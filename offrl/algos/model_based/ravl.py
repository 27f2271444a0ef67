"""RAVL (Sims, Lu & Teh 2024, "The Edge-of-Reach Problem in Offline Model-Based Reinforcement Learning").

Model rollouts of length k sample states that the dataset and the rollouts reach only at their
edge, whose values are never corrected; RAVL's answer is value pessimism over those states, not
a dynamics-uncertainty penalty: EDAC (an N-critic SAC ensemble with the gradient-diversity term,
offrl.algos.model_free.edac) trained on dataset + model-rollout batches, with no reward penalty
(the engine's `penalty_coef` is 0). Defaults are the authors' anyasims/edge-of-reach
train_ravl_agent.py (for D4RL gym).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
from flax import struct

from offrl.algos.model_free import edac, sac_n
from offrl.models.buffer import ModelBuffer, RolloutSettings, empty_model_buffer
from offrl.types import Batch, Spec

NAME = "ravl"
DESCRIPTION = "RAVL: EDAC's critic ensemble on model rollouts, no dynamics penalty (edge-of-reach pessimism)."
PAPER = "Sims, Lu & Teh 2024, The Edge-of-Reach Problem in Offline Model-Based Reinforcement Learning"


@dataclass(frozen=True)
class Config:
    actor_learning_rate: float = 3e-4  # train_ravl_agent.py
    critic_learning_rate: float = 3e-4
    temperature_learning_rate: float = 3e-4  # alpha_learning_rate (auto_alpha True)
    hidden_dims: tuple[int, ...] = (256, 256, 256)  # hidden_dim 256; agent.py's CORL-style EDAC networks have 3 layers
    num_critics: int = 10  # train_ravl_agent.py num_critics
    eta: float = 1.0  # EDAC regulariser coefficient, train_ravl_agent.py
    batch_size: int = 256
    discount: float = 0.99
    tau: float = 5e-3
    init_temperature: float = 1.0
    target_entropy: float | None = None  # None: -action_dim
    normalize_observations: bool = False
    normalize_rewards: bool = False
    horizon: int = 5  # steps_k
    rollout_batch: int = 50_000  # rollouts_per_epoch
    rollout_every: int = 1_000  # updates_per_epoch
    real_ratio: float = 0.05  # dataset_ratio
    model_buffer_capacity: int = 1_250_000  # rollouts_per_epoch x steps_k x buffer_retain_epochs 5
    dynamics_num_models: int = 7  # MBPO ensemble, as the authors' dynamics_training/ensemble.py
    dynamics_num_elites: int = 5
    dynamics_hidden_dims: tuple[int, ...] = (200, 200, 200, 200)
    dynamics_weight_decay: tuple[float, ...] = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)  # per layer (MBPO)
    dynamics_max_epochs: int = 0  # 0: train until 5 epochs without improvement
    termination: str = "env"  # "env": the env's termination function; "learned": the model's terminal head; "never": time limits only
    model_path: str | None = None  # a model directory from `offrl models train`; None: the cache for this dataset
    retrain_model: bool = False  # train a fresh model even if the cache holds one


@struct.dataclass
class State:
    agent: sac_n.State
    model_buffer: ModelBuffer


def rollout_settings(config: Config) -> RolloutSettings:
    return RolloutSettings(horizon=config.horizon, rollout_batch=config.rollout_batch, rollout_every=config.rollout_every,
                           real_ratio=config.real_ratio, capacity=config.model_buffer_capacity, penalty_coef=0.0)


def init(key: jax.Array, spec: Spec, config: Config) -> State:
    return State(agent=sac_n.init(key, spec, config),
                 model_buffer=empty_model_buffer(spec.observation_dim, spec.action_dim, config.model_buffer_capacity))


def update(state: State, batch: Batch, config: Config) -> tuple[State, dict[str, jax.Array]]:
    agent, metrics = edac.update(state.agent, batch, config)
    return state.replace(agent=agent), metrics


def act(state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    return sac_n.act(state.agent, observations, key, deterministic)
