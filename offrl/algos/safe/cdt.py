"""Constrained Decision Transformer (Liu, Guo, Yao, Cen, Yu, Zhang & Zhao, 2023, "Constrained Decision
Transformer for Offline Safe Reinforcement Learning").

The Decision Transformer (offrl/algos/sequence/dt.py) with a second conditioning signal: each step
is four tokens (return-to-go R_t, cost-to-go C_t, state s_t, action a_t), each plus the step's
timestep embedding, and a_t is predicted from the state token (so from R_<=t, C_<=t, s_<=t, a_<t),
as OSRL's `osrl/algorithms/cdt.py` orders them. At evaluation the first cost-to-go is the target
cost κ and each step's cost is subtracted from it, as rewards are from the target return: asking
for less cost asks for safer behaviour, without retraining.

Defaults: OSRL `examples/configs/cdt_configs.py` (CDTTrainConfig) where offrl has the same knob.
The paper's data augmentation (relabelled copies of the safest good episodes for targets above
the data's reward-cost Pareto frontier, offrl/data/cost_return_augmentation.py) is on by default
as in OSRL (augment_percent 0.2); `augment_fraction=0` turns it off.

Action head, as OSRL's default (`stochastic=True`, `DiagGaussianActor` in `osrl/common/net.py`): a
diagonal Gaussian (linear mean and log-std, unsquashed) trained by negative log-likelihood minus a
learned temperature times its entropy; the temperature (initially 0.1) follows SAC's rule toward
a target entropy of −action_dim, compared, as OSRL compares it, with the per-dimension mean entropy
(Adam, lr 1e-4). The policy acts with the mean (OSRL's evaluation) or a sample, clipped to the
action box. `stochastic=False` is offrl's DT head (tanh, mean-squared error). Cost prediction head,
as OSRL's: a two-class head on each action token predicting whether that step pays a cost
(cost > 0; OSRL casts the cost to an integer class), an auxiliary loss weighted 0.02
(loss_cost_weight) that shapes the shared features and is not used when acting. Cost transform, as
OSRL's (`cost_transform=True`): the cost embedding reads 50 − C for a scaled cost-to-go C
(`cost_token_offset`; none: C itself). Episode draws, as OSRL's (`cost_sample=True` with
train_cdt.py's linear `ct = 70 − C`): an episode (an augmented copy: at its target cost) is drawn
with weight max(70 − C, 0), C its cost, then a uniform start within it (`cost_sample_offset`; none:
uniform starts over all steps, DT's draw); episodes costing 70 or more are never drawn.
Not done: OSRL's state prediction head (weight 0 by default).

Engine hooks: `training_data`/`sample` (windows with returns-to-go and costs-to-go, drawn at the
same starts), stateful acting (`init_context`/`act_in_context`) with `ACTS_ON_COSTS`: the policy
receives each step's cost (`info["cost"]`) as it receives rewards. Data without costs is refused.
`use_cost=False` zeroes the cost tokens in training and acting (OSRL's `use_cost` switch): plain DT
with an unused input, the documented broken variant.
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

from offrl.data.cost_return_augmentation import augment_episodes
from offrl.data.sequences import SequenceBatch, sample_sequences, sequence_arrays
from offrl.data.transforms import training_arrays
from offrl.errors import ConfigError
from offrl.nets.transformer import CausalTransformer
from offrl.types import Spec

NAME = "cdt"
DESCRIPTION = "Constrained Decision Transformer: a causal transformer over (return-to-go, cost-to-go, state, action) tokens, conditioned on a target return and a target cost."
PAPER = "Liu et al. 2023, Constrained Decision Transformer for Offline Safe Reinforcement Learning"
ACTS_ON_COSTS = True  # the stateful policy receives each step's cost (offrl/train/policy.py)


def at_target_cost(state, target_cost: float):
    """The same model conditioned on another target cost: OSRL evaluates one trained CDT at several
    (examples/configs/cdt_configs.py target_returns), so `offrl evaluate --target-cost` re-conditions."""
    return state.replace(target_cost=jnp.asarray(target_cost, jnp.float32))


@dataclass(frozen=True)
class Config:
    hidden_dims: tuple[int, ...] = (128, 128, 128)  # OSRL cdt_configs.py: embedding_dim 128, num_layers 3; all equal
    num_heads: int = 8  # OSRL cdt_configs.py
    context_length: int = 10  # K steps per window (OSRL cdt_configs.py seq_len)
    dropout_rate: float = 0.1  # OSRL cdt_configs.py attention/residual/embedding dropout
    learning_rate: float = 1e-4  # OSRL cdt_configs.py (AdamW)
    weight_decay: float = 1e-4  # OSRL cdt_configs.py
    warmup_steps: int = 500  # OSRL cdt_configs.py lr_warmup_steps
    grad_clip: float = 0.25  # OSRL cdt_configs.py clip_grad
    batch_size: int = 2048  # windows per update (OSRL cdt_configs.py)
    return_scale: float = 10.0  # returns-to-go are divided by this (OSRL cdt_configs.py reward_scale 0.1)
    cost_scale: float = 1.0  # costs-to-go are divided by this (OSRL cdt_configs.py cost_scale 1)
    target_return: float | None = None  # evaluation target in env reward units; unset: the best episode return in the data
    target_cost: float = 10.0  # κ: the cost-to-go evaluation starts from, and DSRL's threshold (OSRL's target costs 0-60)
    use_cost: bool = True  # False zeroes the cost tokens (OSRL cdt_configs.py use_cost): the broken variant
    stochastic: bool = True  # Gaussian action head with an entropy bonus (OSRL cdt_configs.py stochastic); False: tanh + MSE
    init_temperature: float = 0.1  # the entropy bonus's starting weight (OSRL cdt_configs.py init_temperature)
    temperature_learning_rate: float = 1e-4  # OSRL cdt.py log_temperature_optimizer (Adam, lr 1e-4)
    cost_loss_weight: float = 0.02  # the cost prediction head's auxiliary loss (OSRL cdt_configs.py loss_cost_weight); 0: off
    cost_token_offset: float | None = 50.0  # the cost embedding reads offset - C (OSRL cdt_configs.py cost_transform, cdt.py 50 - x); None: C
    # episodes drawn with weight max(offset - episode cost, 0) (OSRL cdt_configs.py cost_sample, train_cdt.py ct = 70 - x); None: uniform starts
    cost_sample_offset: float | None = 70.0
    # Pareto-frontier data augmentation (OSRL cdt_configs.py CDTTrainConfig "augmentation param"):
    augment_fraction: float = 0.2  # relabelled copies per episode (augment_percent); 0: off
    augment_degree: int = 4  # polynomial degree of the fitted frontier (deg; the velocity tasks' configs use 1, some 0: flat)
    augment_min_return_gap: float = 1.0  # targets start this far above the frontier (min_reward)
    augment_max_return: float | None = None  # targets' return ceiling (max_reward, absolute per task in OSRL: 600, velocity tasks 2000-3000); None: the data's best episode return
    augment_max_return_decrease: float | None = None  # spread of repeated picks (max_rew_decrease: 100, velocity tasks 300-500); None: a tenth of the data's return range
    augment_beta: float = 1.0  # repeated picks drawn with probability 1 / (distance + beta) (beta)
    augment_seed: int = 0  # the augmentation's draws (OSRL uses the global NumPy seed)
    max_episode_steps: int = 1000  # timestep embedding table size (DSRL's velocity tasks: 1000 steps)
    normalize_observations: bool = True  # OSRL standardises states (process_sequence_dataset obs_mean/obs_std)
    normalize_rewards: bool = False  # returns-to-go are scaled by return_scale instead


def check_config(config: Config) -> None:
    if len(set(config.hidden_dims)) != 1:
        raise ConfigError(f"--hidden-dims is {list(config.hidden_dims)}; expected one embedding width per block, all equal.")
    for name in ("num_heads", "context_length", "max_episode_steps"):
        if getattr(config, name) <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} is {getattr(config, name)}; expected a positive integer.")
    if config.hidden_dims[0] % config.num_heads:
        raise ConfigError(f"--num-heads is {config.num_heads}; expected a divisor of the embedding width {config.hidden_dims[0]}.")
    for name in ("return_scale", "cost_scale"):
        if not getattr(config, name) > 0:
            raise ConfigError(f"--{name.replace('_', '-')} is {getattr(config, name)}; expected a positive number.")
    if not 0.0 <= config.dropout_rate < 1.0:
        raise ConfigError(f"--dropout-rate is {config.dropout_rate}; expected a value in [0, 1).")
    if not 0.0 <= config.augment_fraction <= 10.0:
        raise ConfigError(f"--augment-fraction is {config.augment_fraction}; expected copies per episode in [0, 10].")
    if config.augment_degree < 0:
        raise ConfigError(f"--augment-degree is {config.augment_degree}; expected a non-negative integer (0: a flat frontier).")
    if not config.augment_beta > 0:
        raise ConfigError(f"--augment-beta is {config.augment_beta}; expected a positive number.")
    for name in ("init_temperature", "temperature_learning_rate"):
        if not getattr(config, name) > 0:
            raise ConfigError(f"--{name.replace('_', '-')} is {getattr(config, name)}; expected a positive number.")
    if config.cost_sample_offset is not None and not config.cost_sample_offset > 0:
        raise ConfigError(f"--cost-sample-offset is {config.cost_sample_offset}; expected a positive episode cost (or none).")
    if not config.cost_loss_weight >= 0:
        raise ConfigError(f"--cost-loss-weight is {config.cost_loss_weight}; expected a non-negative number.")


LOG_STD_BOUNDS = (-5.0, 2.0)  # OSRL net.py DiagGaussianActor log_std_bounds (declared there; applied here)


class ConstrainedDecisionTransformerNet(nn.Module):
    """(R_t, C_t, s_t, a_t) tokens per step -> per step: the action mean and log-std, read from the state
    token (the log-std unused by the deterministic head), and cost-class logits, read from the action token."""

    action_dim: int
    embedding_dim: int
    num_layers: int
    num_heads: int
    max_episode_steps: int
    dropout_rate: float
    stochastic: bool = True
    cost_token_offset: float | None = None

    @nn.compact
    def __call__(self, observations, actions, returns_to_go, costs_to_go, timesteps, training: bool = False):
        batch, steps = observations.shape[:2]
        if self.cost_token_offset is not None:
            costs_to_go = self.cost_token_offset - costs_to_go
        init = nn.initializers.normal(0.02)  # OSRL cdt.py _init_weights
        time = nn.Embed(self.max_episode_steps, self.embedding_dim, embedding_init=init)(
            jnp.clip(timesteps, 0, self.max_episode_steps - 1))
        embed = lambda values: nn.Dense(self.embedding_dim, kernel_init=init)(values) + time  # noqa: E731
        tokens = jnp.stack([embed(returns_to_go[..., None]), embed(costs_to_go[..., None]), embed(observations),
                            embed(actions)], axis=2).reshape(batch, 4 * steps, -1)  # token 4t + 2 is s_t
        tokens = nn.Dropout(self.dropout_rate)(nn.LayerNorm()(tokens), deterministic=not training)
        features = CausalTransformer(self.num_layers, self.num_heads, self.dropout_rate, self.dropout_rate)(tokens, training)
        state_features = features[:, 2::4]
        cost_logits = nn.Dense(2, kernel_init=init, name="cost_head")(features[:, 3::4])
        if not self.stochastic:
            mean = jnp.tanh(nn.Dense(self.action_dim, kernel_init=init)(state_features))
            return mean, jnp.zeros_like(mean), cost_logits
        orthogonal = nn.initializers.orthogonal()  # OSRL net.py DiagGaussianActor weight_init
        mean = nn.Dense(self.action_dim, kernel_init=orthogonal, name="mean")(state_features)
        log_std = jnp.clip(nn.Dense(self.action_dim, kernel_init=orthogonal, name="log_std")(state_features), *LOG_STD_BOUNDS)
        return mean, log_std, cost_logits


@struct.dataclass
class State:
    model: TrainState
    temperature: TrainState  # params {'log_temperature': scalar}; unused by the deterministic head
    target_return: jax.Array  # env reward units; set from the training data by `update`
    target_cost: jax.Array  # env cost units
    rng: jax.Array
    context_length: int = struct.field(pytree_node=False, default=10)
    return_scale: float = struct.field(pytree_node=False, default=10.0)
    cost_scale: float = struct.field(pytree_node=False, default=1.0)
    use_cost: bool = struct.field(pytree_node=False, default=True)
    stochastic: bool = struct.field(pytree_node=False, default=True)
    action_dim: int = struct.field(pytree_node=False, default=1)


@struct.dataclass
class WindowBatch:
    windows: SequenceBatch
    costs_to_go: jax.Array  # (batch, K), scaled by 1 / cost_scale, zero on padding
    cost_labels: jax.Array  # (batch, K): 1 where the step pays a cost, zero on padding
    target_return: jax.Array


@struct.dataclass
class Context:
    observations: jax.Array
    actions: jax.Array
    returns_to_go: jax.Array
    costs_to_go: jax.Array
    timesteps: jax.Array
    length: jax.Array


def _network(spec: Spec, config: Config) -> ConstrainedDecisionTransformerNet:
    return ConstrainedDecisionTransformerNet(spec.action_dim, config.hidden_dims[0], len(config.hidden_dims),
                                             config.num_heads, config.max_episode_steps, config.dropout_rate, config.stochastic,
                                             config.cost_token_offset)


def init(key: jax.Array, spec: Spec, config: Config) -> State:
    check_config(config)
    params_key, rng = jax.random.split(key)
    k = config.context_length
    zeros = jnp.zeros((1, k))
    params = _network(spec, config).init(params_key, jnp.zeros((1, k, spec.observation_dim)),
                                         jnp.zeros((1, k, spec.action_dim)), zeros, zeros, jnp.zeros((1, k), jnp.int32))
    warmup = max(config.warmup_steps, 1)  # OSRL cdt.py: LambdaLR(min((step + 1) / warmup, 1)) on AdamW
    schedule = lambda step: config.learning_rate * jnp.minimum((step + 1) / warmup, 1.0)  # noqa: E731
    tx = optax.chain(optax.clip_by_global_norm(config.grad_clip),
                     optax.adamw(schedule, b1=0.9, b2=0.999, weight_decay=config.weight_decay))
    temperature = TrainState.create(apply_fn=None, params={"log_temperature": jnp.log(jnp.asarray(config.init_temperature, jnp.float32))},
                                    tx=optax.adam(config.temperature_learning_rate))
    return State(
        model=TrainState.create(apply_fn=_network(spec, config).apply, params=params, tx=tx), temperature=temperature,
        target_return=jnp.asarray(config.target_return or 0.0, jnp.float32),
        target_cost=jnp.asarray(config.target_cost, jnp.float32), rng=rng, context_length=k,
        return_scale=float(config.return_scale), cost_scale=float(config.cost_scale), use_cost=config.use_cost,
        stochastic=config.stochastic, action_dim=spec.action_dim,
    )


def training_data(dataset: Any, normalizer: Any, config: Config) -> dict[str, np.ndarray]:
    """Engine hook: flat rows with returns-to-go and costs-to-go (undiscounted, scaled), timesteps,
    steps left and the target return; refuses a dataset without costs."""
    check_config(config)
    if dataset.costs is None:
        raise ConfigError(f"{dataset.where} has no per-step costs; expected a dataset with a 'costs' field (DSRL layout) for {NAME}.")
    transitions = training_arrays(dataset, normalizer)
    rows, starts, return_shift, cost_shift = augmented_rows(dataset, config)
    rewards, terminals = transitions["rewards"][rows], dataset.terminals[rows]
    data = sequence_arrays(transitions["observations"][rows], transitions["actions"][rows], rewards / config.return_scale,
                           terminals, starts)
    costs = sequence_arrays(transitions["observations"][rows][:, :0], transitions["actions"][rows][:, :0],
                            dataset.costs[rows] / config.cost_scale, terminals, starts)
    data["returns_to_go"] = data["returns_to_go"] + (return_shift * normalizer.reward_scale / config.return_scale).astype(np.float32)
    data["costs_to_go"] = costs["returns_to_go"] + (cost_shift / config.cost_scale).astype(np.float32)
    data["cost_labels"] = (dataset.costs[rows] > 0).astype(np.float32)
    if config.cost_sample_offset is not None:
        data["start_cdf"] = cost_weighted_start_cdf(data["costs_to_go"] * config.cost_scale, starts, config.cost_sample_offset,
                                                    dataset.where)
    target = config.target_return
    if target is None:
        target = float(np.add.reduceat(transitions["rewards"].astype(np.float64), dataset.episode_starts).max())
    data["target_return"] = np.asarray(target, np.float32)
    return data


def cost_weighted_start_cdf(costs_to_go: np.ndarray, starts: np.ndarray, offset: float, where: str) -> np.ndarray:
    """Cumulative start probabilities over rows: episode e (first row starts[e]; its cost the
    cost-to-go there, env units) weighs max(offset - cost, 0), spread evenly over its rows."""
    lengths = np.diff(np.append(starts, len(costs_to_go)))
    weights = np.maximum(offset - costs_to_go[starts].astype(np.float64), 0.0)
    if not weights.sum() > 0:
        raise ConfigError(f"{where}: every episode costs at least --cost-sample-offset {offset:g}, so none would be drawn "
                          "(weight: offset minus episode cost); expected a larger offset, or none for uniform starts.")
    cdf = np.cumsum(np.repeat(weights / lengths, lengths))
    return (cdf / cdf[-1]).astype(np.float32)


def augmented_rows(dataset: Any, config: Config) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(rows, episode starts, return shift, cost shift) of the training data: every dataset row, then
    each augmented copy's episode rows, shifted so its first step's returns-to-go are its targets
    (env units; zero shift on the original rows)."""
    n = dataset.num_transitions
    episode_returns, episode_costs = dataset.episode_returns(), dataset.episode_costs()
    copies = augment_episodes(episode_costs, episode_returns, config.augment_fraction, config.augment_degree,
                              config.augment_min_return_gap, config.augment_max_return,
                              config.augment_max_return_decrease, config.augment_beta, config.augment_seed)
    lengths = dataset.episode_lengths[copies.episodes]
    rows = np.concatenate([np.arange(n)] + [np.arange(dataset.episode_starts[e], dataset.episode_ends[e]) for e in copies.episodes])
    starts = np.concatenate([dataset.episode_starts, n + np.cumsum(lengths) - lengths]).astype(np.int64)
    return_shift = np.concatenate([np.zeros(n), np.repeat(copies.target_returns - episode_returns[copies.episodes], lengths)])
    cost_shift = np.concatenate([np.zeros(n), np.repeat(copies.target_costs - episode_costs[copies.episodes], lengths)])
    return rows, starts, return_shift, cost_shift


def sample(data: dict[str, jax.Array], key: jax.Array, config: Config) -> WindowBatch:
    """Engine hook: windows of returns-to-go and, drawn with the same key (so the same starts), of
    costs-to-go and of the steps' cost labels."""
    windows = sample_sequences(data, key, config.batch_size, config.context_length)
    aligned = lambda name: sample_sequences({**data, "returns_to_go": data[name]}, key, config.batch_size,  # noqa: E731
                                            config.context_length).returns_to_go
    return WindowBatch(windows=windows, costs_to_go=aligned("costs_to_go"), cost_labels=aligned("cost_labels"),
                       target_return=data["target_return"])


def gaussian_log_prob_and_entropy(mean: jax.Array, log_std: jax.Array, actions: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-dimension log-density of `actions` and entropy of N(mean, exp(log_std)^2)."""
    log_prob = -0.5 * ((actions - mean) / jnp.exp(log_std)) ** 2 - log_std - 0.5 * jnp.log(2 * jnp.pi)
    return log_prob, log_std + 0.5 * (1.0 + jnp.log(2 * jnp.pi))


def update(state: State, batch: WindowBatch, config: Config) -> tuple[State, dict[str, jax.Array]]:
    rng, dropout_key = jax.random.split(state.rng)
    windows = batch.windows
    mask = windows.mask.astype(jnp.float32)
    count = jnp.maximum(mask.sum(), 1.0)
    costs_to_go = batch.costs_to_go if config.use_cost else jnp.zeros_like(batch.costs_to_go)
    temperature = jnp.exp(state.temperature.params["log_temperature"])

    def loss_fn(params):
        mean, log_std, cost_logits = state.model.apply_fn(params, windows.observations, windows.actions, windows.returns_to_go,
                                                          costs_to_go, windows.timesteps, training=True,
                                                          rngs={"dropout": dropout_key})
        masked_mean = lambda values: (values.mean(axis=-1) * mask).sum() / count  # noqa: E731
        if config.stochastic:
            # OSRL cdt.py: -(mean log-likelihood + temperature * mean entropy), both per action dimension
            log_prob, entropy = gaussian_log_prob_and_entropy(mean, log_std, windows.actions)
            action_loss = -masked_mean(log_prob)
            entropy = masked_mean(entropy)
            action_term = action_loss - jax.lax.stop_gradient(temperature) * entropy
        else:
            action_loss = masked_mean((mean - windows.actions) ** 2)
            entropy = jnp.zeros(())
            action_term = action_loss
        labels = batch.cost_labels.astype(jnp.int32)
        cost_nll = -jnp.take_along_axis(jax.nn.log_softmax(cost_logits), labels[..., None], axis=-1)[..., 0]
        cost_loss = (cost_nll * mask).sum() / count
        accuracy = ((cost_logits.argmax(-1) == labels) * mask).sum() / count
        return action_term + config.cost_loss_weight * cost_loss, (action_loss, entropy, cost_loss, accuracy)

    (_, (action_loss, entropy, cost_loss, accuracy)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.model.params)
    metrics = {"actor_loss": action_loss, "cost_loss": cost_loss, "cost_accuracy": accuracy, "grad_norm": optax.tree.norm(grads)}
    new_temperature = state.temperature
    if config.stochastic:
        # SAC's temperature rule (OSRL cdt.py): d/d log T of T * (entropy - target) = T * (entropy - target)
        target_entropy = -float(state.action_dim)
        gap = jax.lax.stop_gradient(entropy - target_entropy)
        new_temperature = state.temperature.apply_gradients(grads={"log_temperature": temperature * gap})
        metrics.update(entropy=entropy, temperature=temperature)
    return state.replace(model=state.model.apply_gradients(grads=grads), temperature=new_temperature,
                         target_return=jnp.asarray(batch.target_return, jnp.float32), rng=rng), metrics


def _actions(state: State, mean: jax.Array, log_std: jax.Array, key: jax.Array, deterministic: bool) -> jax.Array:
    """The action head's mean (OSRL's evaluation) or a sample from it, inside the action box [-1, 1]."""
    if deterministic or not state.stochastic:
        return jnp.clip(mean, -1.0, 1.0)
    return jnp.clip(mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape), -1.0, 1.0)


def init_context(state: State, num_envs: int, spec: Spec) -> Context:
    k = state.context_length
    return Context(observations=jnp.zeros((num_envs, k, spec.observation_dim)), actions=jnp.zeros((num_envs, k, spec.action_dim)),
                   returns_to_go=jnp.zeros((num_envs, k)), costs_to_go=jnp.zeros((num_envs, k)),
                   timesteps=jnp.zeros((num_envs, k), jnp.int32), length=jnp.zeros((num_envs,), jnp.int32))


def act_in_context(state: State, context: Context, observations: jax.Array, rewards: jax.Array, starts: jax.Array,
                   key: jax.Array, deterministic: bool = True, costs: jax.Array | None = None) -> tuple[jax.Array, Context]:
    """One step of every episode: as DT's, with the cost-to-go starting at the target cost and
    falling by each step's cost (`costs[i]`: the cost paid on the step that led to `observations[i]`)."""
    k = state.context_length
    costs = jnp.zeros_like(rewards) if costs is None else costs
    starts = jnp.asarray(starts, bool) | (context.length == 0)
    length = jnp.where(starts, 0, context.length)
    last = jnp.clip(length - 1, 0, k - 1)[:, None]
    previous = lambda values: jnp.take_along_axis(values, last, axis=1)[:, 0]  # noqa: E731
    rtg = jnp.where(starts, state.target_return / state.return_scale, previous(context.returns_to_go) - rewards / state.return_scale)
    ctg = jnp.where(starts, state.target_cost / state.cost_scale, previous(context.costs_to_go) - costs / state.cost_scale)
    timestep = jnp.where(starts, 0, previous(context.timesteps) + 1).astype(jnp.int32)
    full = length == k

    def shift(values):
        return jnp.where(full.reshape(full.shape + (1,) * (values.ndim - 1)), jnp.roll(values, -1, axis=1), values)

    position = jnp.minimum(length, k - 1)
    rows = jnp.arange(observations.shape[0])
    context = Context(
        observations=shift(context.observations).at[rows, position].set(observations),
        actions=shift(context.actions).at[rows, position].set(0.0),
        returns_to_go=shift(context.returns_to_go).at[rows, position].set(rtg),
        costs_to_go=shift(context.costs_to_go).at[rows, position].set(ctg),
        timesteps=shift(context.timesteps).at[rows, position].set(timestep),
        length=jnp.minimum(length + 1, k),
    )
    costs_in = context.costs_to_go if state.use_cost else jnp.zeros_like(context.costs_to_go)
    mean, log_std, _ = state.model.apply_fn(state.model.params, context.observations, context.actions, context.returns_to_go,
                                            costs_in, context.timesteps)
    actions = _actions(state, mean[rows, position], log_std[rows, position], key, deterministic)
    return actions, context.replace(actions=context.actions.at[rows, position].set(actions))


def act(state: State, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    """The contract's memoryless act: each observation as an episode's first step, at the targets."""
    n = observations.shape[0]
    ctg = jnp.full((n, 1), state.target_cost / state.cost_scale) if state.use_cost else jnp.zeros((n, 1))
    mean, log_std, _ = state.model.apply_fn(state.model.params, observations[:, None], jnp.zeros((n, 1, state.action_dim)),
                                            jnp.full((n, 1), state.target_return / state.return_scale), ctg,
                                            jnp.zeros((n, 1), jnp.int32))
    return _actions(state, mean[:, 0], log_std[:, 0], key, deterministic)
