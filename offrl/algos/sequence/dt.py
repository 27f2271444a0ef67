"""Decision Transformer (Chen, Lu, Rajeswaran, Lee, Grover, Laskin, Abbeel, Srinivas & Mordatch,
2021, "Decision Transformer: Reinforcement Learning via Sequence Modeling").

Offline RL as return-conditioned sequence modelling: a causal transformer reads the last K steps
as interleaved tokens (return-to-go R_t, state s_t, action a_t), each plus an embedding of the
step's timestep, and predicts a_t from the state token s_t (so from R_<=t, s_<=t, a_<t):
    loss = mean over real (unpadded) steps of (tanh(head(h_{s_t})) - a_t)^2
At evaluation the first return-to-go is a target return, and each reward received is subtracted
from it; the policy is history-dependent, so it acts through `init_context` / `act_in_context`
(see offrl/train/policy.py). Defaults are CORL's `dt.py` TrainConfig, which follows the paper's
D4RL gym settings (Table 8) except for its 10k-step warmup (the reference code's default).

Engine hooks (besides the contract's init/update/act):
- `training_data` lays the dataset out for window sampling (offrl/data/sequences.py, shared
  with other sequence and Monte-Carlo methods) and records the target return;
- `sample` draws a batch of windows inside the compiled step.
This module imports that shared data layer (not a trainer or another algorithm): the windows are
what DT's update consumes, as transitions are what the other algorithms consume.

Target return: `target_return` when given, in the environment's own reward units. Otherwise the
dataset's best episode return, a rule that needs no knowledge of the task: DT conditions on
returns that occur in its data. For D4RL's gym datasets CORL and the paper use higher, hand-set
targets: hopper 3600, halfcheetah 12000 (the paper 6000), walker2d 5000 (--target-return).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from flax.training.train_state import TrainState

from offrl.data.sequences import SequenceBatch, sample_sequences, sequence_arrays
from offrl.data.transforms import training_arrays
from offrl.errors import ConfigError
from offrl.nets.transformer import CausalTransformer
from offrl.types import Spec

NAME = "dt"
DESCRIPTION = "Decision Transformer: a causal transformer over (return-to-go, state, action) tokens, conditioned on a target return."
PAPER = "Chen et al. 2021, Decision Transformer: Reinforcement Learning via Sequence Modeling"


@dataclass(frozen=True)
class Config:
    hidden_dims: tuple[int, ...] = (128, 128, 128)  # one transformer block per entry, each the embedding width (CORL dt.py: 3 layers of 128); all equal
    num_heads: int = 1  # CORL dt.py / paper Table 8
    context_length: int = 20  # K steps per window (CORL dt.py seq_len; paper: 20 for hopper, halfcheetah, walker2d)
    dropout_rate: float = 0.1  # embedding, attention and residual dropout (CORL dt.py: 0.1 each)
    learning_rate: float = 1e-4  # CORL dt.py / paper Table 8 (AdamW)
    weight_decay: float = 1e-4  # CORL dt.py / paper Table 8
    warmup_steps: int = 10_000  # linear learning-rate warmup (CORL dt.py; the reference code's default)
    grad_clip: float = 0.25  # global gradient-norm clip (CORL dt.py / paper Table 8)
    batch_size: int = 64  # windows per update (CORL dt.py / paper Table 8)
    return_scale: float = 1000.0  # returns-to-go are divided by this (reference gym/experiment.py scale=1000; CORL reward_scale 0.001)
    target_return: float | None = None  # evaluation target in env reward units; unset: the dataset's best episode return
    max_episode_steps: int = 1000  # size of the timestep embedding table (CORL dt.py episode_len); later steps share the last
    normalize_observations: bool = True  # CORL dt.py standardises states by the dataset's mean and std
    normalize_rewards: bool = False  # returns-to-go are scaled by return_scale instead


def check_config(config: Config) -> None:
    """DT's own constraints, one sentence each (the engine checks the shared field names)."""
    widths = set(config.hidden_dims)
    if len(widths) != 1:
        raise ConfigError(
            f"--hidden-dims is {list(config.hidden_dims)}; expected one embedding width per transformer block, all equal."
        )
    width = config.hidden_dims[0]
    for name in ("num_heads", "context_length", "max_episode_steps"):
        if getattr(config, name) <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} is {getattr(config, name)}; expected a positive integer.")
    if width % config.num_heads:
        raise ConfigError(f"--num-heads is {config.num_heads}; expected a divisor of the embedding width {width}.")
    if not 0.0 <= config.dropout_rate < 1.0:
        raise ConfigError(f"--dropout-rate is {config.dropout_rate}; expected a value in [0, 1).")
    if not config.return_scale > 0:
        raise ConfigError(f"--return-scale is {config.return_scale}; expected a positive number.")
    if config.warmup_steps < 0:
        raise ConfigError(f"--warmup-steps is {config.warmup_steps}; expected 0 or a positive integer.")


class DecisionTransformerNet(nn.Module):
    """(return-to-go, state, action) tokens per step -> an action for every step, read from its state token."""

    action_dim: int
    embedding_dim: int
    num_layers: int
    num_heads: int
    max_episode_steps: int
    dropout_rate: float

    @nn.compact
    def __call__(self, observations, actions, returns_to_go, timesteps, training: bool = False) -> jax.Array:
        batch, steps = observations.shape[:2]
        init = nn.initializers.normal(0.02)  # CORL dt.py _init_weights
        time = nn.Embed(self.max_episode_steps, self.embedding_dim, embedding_init=init)(
            jnp.clip(timesteps, 0, self.max_episode_steps - 1)
        )
        return_tokens = nn.Dense(self.embedding_dim, kernel_init=init)(returns_to_go[..., None]) + time
        state_tokens = nn.Dense(self.embedding_dim, kernel_init=init)(observations) + time
        action_tokens = nn.Dense(self.embedding_dim, kernel_init=init)(actions) + time
        # (R_0, s_0, a_0, R_1, s_1, a_1, ...): token 3t + 1 is s_t.
        tokens = jnp.stack([return_tokens, state_tokens, action_tokens], axis=2).reshape(batch, 3 * steps, -1)
        tokens = nn.Dropout(self.dropout_rate)(nn.LayerNorm()(tokens), deterministic=not training)
        features = CausalTransformer(self.num_layers, self.num_heads, self.dropout_rate, self.dropout_rate)(tokens, training)
        return jnp.tanh(nn.Dense(self.action_dim, kernel_init=init)(features[:, 1::3]))


@struct.dataclass
class State:
    model: TrainState
    target_return: jax.Array  # in env reward units; set from the training data by `update`
    rng: jax.Array
    # What acting needs besides the parameters (static: fixed by the Config, not checkpointed).
    context_length: int = struct.field(pytree_node=False, default=20)
    return_scale: float = struct.field(pytree_node=False, default=1000.0)
    action_dim: int = struct.field(pytree_node=False, default=1)  # for the memoryless `act`


@struct.dataclass
class WindowBatch:
    """What `sample` gives `update`: windows of K steps, and the target return the data implies."""

    windows: SequenceBatch
    target_return: jax.Array


@struct.dataclass
class Context:
    """The last K steps of each evaluation episode, left-aligned: step k of the history at index k
    until K steps are held, then the oldest step drops off the front."""

    observations: jax.Array  # (envs, K, obs_dim)
    actions: jax.Array  # (envs, K, action_dim)
    returns_to_go: jax.Array  # (envs, K), scaled by 1 / return_scale
    timesteps: jax.Array  # (envs, K)
    length: jax.Array  # (envs,) steps held, at most K


def _network(spec: Spec, config: Config) -> DecisionTransformerNet:
    return DecisionTransformerNet(
        action_dim=spec.action_dim,
        embedding_dim=config.hidden_dims[0],
        num_layers=len(config.hidden_dims),
        num_heads=config.num_heads,
        max_episode_steps=config.max_episode_steps,
        dropout_rate=config.dropout_rate,
    )


def init(key: jax.Array, spec: Spec, config: Config) -> State:
    check_config(config)
    params_key, rng = jax.random.split(key)
    k = config.context_length
    network = _network(spec, config)
    params = network.init(
        params_key, jnp.zeros((1, k, spec.observation_dim)), jnp.zeros((1, k, spec.action_dim)),
        jnp.zeros((1, k)), jnp.zeros((1, k), jnp.int32),
    )
    # CORL dt.py: LambdaLR(min((step + 1) / warmup_steps, 1)) on AdamW, after norm clipping.
    warmup = max(config.warmup_steps, 1)
    schedule = lambda step: config.learning_rate * jnp.minimum((step + 1) / warmup, 1.0)
    tx = optax.chain(
        optax.clip_by_global_norm(config.grad_clip),
        optax.adamw(schedule, b1=0.9, b2=0.999, weight_decay=config.weight_decay),
    )
    target = jnp.asarray(0.0 if config.target_return is None else config.target_return, jnp.float32)
    return State(
        model=TrainState.create(apply_fn=network.apply, params=params, tx=tx), target_return=target, rng=rng,
        context_length=k, return_scale=float(config.return_scale), action_dim=spec.action_dim,
    )


def training_data(dataset: Any, normalizer: Any, config: Config) -> dict[str, np.ndarray]:
    """Engine hook: the dataset as flat rows with returns-to-go (undiscounted, scaled by
    1 / return_scale), timesteps and steps left, and the target return (env reward units)."""
    check_config(config)
    transitions = training_arrays(dataset, normalizer)
    data = sequence_arrays(
        transitions["observations"], transitions["actions"], transitions["rewards"] / config.return_scale,
        dataset.terminals, dataset.episode_starts,
    )
    if config.target_return is None:
        # The best episode return in the data, in the units the policy sees rewards in.
        target = float(np.add.reduceat(transitions["rewards"].astype(np.float64), dataset.episode_starts).max())
    else:
        target = config.target_return
    data["target_return"] = np.asarray(target, np.float32)
    return data


def sample(data: dict[str, jax.Array], key: jax.Array, config: Config) -> WindowBatch:
    """Engine hook: `batch_size` windows of `context_length` steps, gathered on the device."""
    windows = sample_sequences(data, key, config.batch_size, config.context_length)
    return WindowBatch(windows=windows, target_return=data["target_return"])


def update(state: State, batch: WindowBatch, config: Config) -> tuple[State, dict[str, jax.Array]]:
    rng, dropout_key = jax.random.split(state.rng)
    windows = batch.windows
    mask = windows.mask.astype(jnp.float32)

    def loss_fn(params):
        predicted = state.model.apply_fn(
            params, windows.observations, windows.actions, windows.returns_to_go, windows.timesteps,
            training=True, rngs={"dropout": dropout_key},
        )
        squared = ((predicted - windows.actions) ** 2).mean(axis=-1)
        return (squared * mask).sum() / jnp.maximum(mask.sum(), 1.0)

    loss, grads = jax.value_and_grad(loss_fn)(state.model.params)
    model = state.model.apply_gradients(grads=grads)
    metrics = {"actor_loss": loss, "grad_norm": optax.tree.norm(grads), "valid_fraction": mask.mean()}
    return state.replace(model=model, target_return=jnp.asarray(batch.target_return, jnp.float32), rng=rng), metrics


def init_context(state: State, num_envs: int, spec: Spec) -> Context:
    """An empty history for `num_envs` episodes (the first `act_in_context` call starts them)."""
    k = state.context_length
    return Context(
        observations=jnp.zeros((num_envs, k, spec.observation_dim), jnp.float32),
        actions=jnp.zeros((num_envs, k, spec.action_dim), jnp.float32),
        returns_to_go=jnp.zeros((num_envs, k), jnp.float32),
        timesteps=jnp.zeros((num_envs, k), jnp.int32),
        length=jnp.zeros((num_envs,), jnp.int32),
    )


def act_in_context(state: State, context: Context, observations: jax.Array, rewards: jax.Array, starts: jax.Array,
                   key: jax.Array, deterministic: bool = True) -> tuple[jax.Array, Context]:
    """Append this step to each episode's history and predict its action.

    `rewards[i]` is the reward received on the step that led to `observations[i]`; where
    `starts[i]` (or the history is empty) the observation begins a new episode: that history is
    cleared and the return-to-go restarts at the target. Otherwise the new return-to-go is the
    previous one minus the reward, the timestep the previous one plus 1.
    """
    k, scale = state.context_length, state.return_scale
    starts = jnp.asarray(starts, bool) | (context.length == 0)
    length = jnp.where(starts, 0, context.length)
    last = jnp.clip(length - 1, 0, k - 1)[:, None]
    previous_rtg = jnp.take_along_axis(context.returns_to_go, last, axis=1)[:, 0]
    previous_time = jnp.take_along_axis(context.timesteps, last, axis=1)[:, 0]
    rtg = jnp.where(starts, state.target_return / scale, previous_rtg - rewards / scale)
    timestep = jnp.where(starts, 0, previous_time + 1).astype(jnp.int32)

    full = length == k  # a full history drops its oldest step to make room

    def shift(values):
        keep_order = full.reshape(full.shape + (1,) * (values.ndim - 1))
        return jnp.where(keep_order, jnp.roll(values, -1, axis=1), values)

    position = jnp.minimum(length, k - 1)
    rows = jnp.arange(observations.shape[0])
    # A cleared history keeps stale entries after `position`: causal attention never reads them.
    context = Context(
        observations=shift(context.observations).at[rows, position].set(observations),
        actions=shift(context.actions).at[rows, position].set(0.0),  # a_t is what we predict
        returns_to_go=shift(context.returns_to_go).at[rows, position].set(rtg),
        timesteps=shift(context.timesteps).at[rows, position].set(timestep),
        length=jnp.minimum(length + 1, k),
    )
    predicted = state.model.apply_fn(
        state.model.params, context.observations, context.actions, context.returns_to_go, context.timesteps
    )
    actions = predicted[rows, position]
    return actions, context.replace(actions=context.actions.at[rows, position].set(actions))


def act(state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    """The contract's memoryless act: each observation as the first step of an episode,
    conditioned on the target return. Evaluation uses `act_in_context` instead."""
    n = observations.shape[0]
    predicted = state.model.apply_fn(
        state.model.params, observations[:, None], jnp.zeros((n, 1, state.action_dim)),
        jnp.full((n, 1), state.target_return / state.return_scale), jnp.zeros((n, 1), jnp.int32),
    )
    return predicted[:, 0]
