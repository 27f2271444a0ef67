"""Model rollouts inside the fused update, for any algorithm that trains on them.

An algorithm opts in with a `rollout_settings(config) -> RolloutSettings` hook and a
`model_buffer` field in its state (offrl/models/buffer.py). The engine then
- trains or loads the dynamics ensemble for the dataset (`model_rollout_arrays`, cached by
  dataset fingerprint and config, offrl/models/cache.py) and puts it on the device beside the data;
- every `rollout_every` updates, inside the compiled program, starts `rollout_batch` rollouts
  from dataset states, acts with the algorithm's own `act` (stochastic) for `horizon` steps in
  the model (a uniformly drawn elite per transition, MOPO/MBPO), subtracts
  `penalty_coef * max_i ||std_i||` (MOPO's penalty over the elites, Unifloral algorithms/dynamics.py;
  with `uncertainty="disagreement"` the largest distance of an elite's next-state mean from the
  elites' average instead, the MOPO code's other penalty)
  and writes the rows into the state's model buffer; a rollout stops at its first predicted
  terminal (the env's termination function, offrl/envs/termination.py, or with
  `termination="learned"` the ensemble's terminal head): the terminal transition is kept,
  nothing after it is written;
- draws each batch as `real_ratio` dataset rows and the rest model-buffer rows;
- logs the latest rollout's statistics (ROLLOUT_STATISTICS) with the update metrics.
An algorithm whose penalty needs the model at every update (MOBILE: the spread of target values
over sampled next states) also defines
    model_reward_penalty(state, observations, actions, sample_next_observations, key, config)
returning one reward penalty per row, in the critic's (scaled) reward units; the engine calls it
on the batch's model rows only, before `update`, and subtracts it from their rewards
(`penalise_model_rows`). `sample_next_observations(observations, actions, key, num_samples)`
draws from every elite's Gaussian, in the algorithm's (normalised) observation units.
Learned termination thresholds the elites' mean terminal probability at 0.5, not that of the
elite that produced the step: the head sees (s, a), not the sampled next state, so which elite
was drawn carries no information about termination, and the mean of the members the model
trusts most is the steadier (better calibrated) classifier.
Nothing returns to the host per rollout. Under a `vmap` seed axis the rollout's `lax.cond`
becomes a select, so rollouts are computed every update (CPU's default `map` axis keeps the cond).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from offrl.data.dataset import Dataset
from offrl.data.fingerprint import dataset_fingerprint
from offrl.data.registry import default_data_dir
from offrl.data.transforms import Normalizer
from offrl.envs.termination import termination_box
from offrl.errors import ConfigError
from offrl.models.buffer import ROLLOUT_STATISTICS, ModelBuffer
from offrl.models.cache import cached_model, load_model
from offrl.models.ensemble import sample_elite, sample_elite_next_observations
from offrl.models.training import DynamicsConfig, check_dataset_size, check_terminal_rows, train_dynamics
from offrl.types import Batch

FIELDS = ("observations", "actions", "rewards", "next_observations", "dones")
TERMINATIONS = ("env", "never", "learned")


def uses_model_rollouts(algo: ModuleType) -> bool:
    return getattr(algo, "rollout_settings", None) is not None


def dynamics_config_of(algo_config: Any) -> DynamicsConfig:
    """The DynamicsConfig an algorithm asks for: its `dynamics_<field>` fields over the defaults,
    with a terminal head when its `termination` is "learned"."""
    fields = DynamicsConfig.__dataclass_fields__
    chosen = {field.name[len("dynamics_"):]: getattr(algo_config, field.name) for field in dataclasses.fields(algo_config)
              if field.name.startswith("dynamics_") and field.name[len("dynamics_"):] in fields}
    return DynamicsConfig(**chosen, terminal_head=getattr(algo_config, "termination", "env") == "learned")


def models_dir(data_dir: str | None = None) -> Path:
    return default_data_dir(data_dir) / "models"


def action_scaling(normalizer: Normalizer) -> dict[str, list[float]]:
    return {"low": np.asarray(normalizer.action_low, np.float32).tolist(), "high": np.asarray(normalizer.action_high, np.float32).tolist()}


def dataset_dynamics(dataset: Dataset, normalizer: Normalizer, config: DynamicsConfig, cache_dir: str | Path | None = None,
                     model_path: str | None = None, retrain: bool = False, log=None, dataset_name: str | None = None):
    """(model, meta, reused) for `dataset`: from `model_path`, the cache, or trained now and cached."""
    fingerprint = dataset_fingerprint(dataset)
    if model_path is not None:
        model, meta = load_model(model_path, fingerprint)
        if config.terminal_head and not model.terminal_head:
            raise ConfigError(f"The dynamics model in '{model_path}' has no terminal head; expected one trained for "
                              "--termination learned (or by `offrl models train --terminal-head`).")
        return model, meta, True
    config.validate()
    check_dataset_size(dataset.num_transitions, config, where=f"Dataset {dataset_name or dataset!r}")
    scaled_actions = np.clip(normalizer.scale_actions(dataset.actions), -1.0, 1.0).astype(np.float32)

    def train():
        return train_dynamics(dataset.observations, scaled_actions, dataset.rewards, dataset.next_observations, config, log=log,
                              terminals=dataset.terminals)

    return cached_model(cache_dir or models_dir(), fingerprint, config, action_scaling(normalizer), train,
                        retrain=retrain, dataset_name=dataset_name)


def model_rollout_arrays(algo: ModuleType, algo_config: Any, dataset: Dataset, normalizer: Normalizer,
                         env_id: str | None) -> dict[str, Any]:
    """What the compiled rollouts need on the device: the model, the termination box, the transforms."""
    settings = algo.rollout_settings(algo_config)
    settings.validate(algo_config.batch_size)
    termination = getattr(algo_config, "termination", "env")
    if termination not in TERMINATIONS:
        raise ConfigError(f"--termination is {termination!r}; expected 'env' (the env's termination function), "
                          "'learned' (a terminal head trained on the dataset's terminals) or 'never'.")
    if termination == "env":
        low, high = termination_box(env_id or dataset.metadata.env_id, dataset.spec.observation_dim)
    else:  # "never": the user states that episodes end only by time limit; "learned": the model's terminal head
        low = high = None
    if termination == "learned":
        name = dataset.metadata.name
        check_terminal_rows(dataset.terminals, "--termination learned", where=f"dataset '{name}'" if name else "the dataset")
    observation_dim = dataset.spec.observation_dim
    low = np.full(observation_dim, -np.inf, np.float32) if low is None else low
    high = np.full(observation_dim, np.inf, np.float32) if high is None else high
    model, _, _ = dataset_dynamics(dataset, normalizer, dynamics_config_of(algo_config),
                                   model_path=getattr(algo_config, "model_path", None),
                                   retrain=bool(getattr(algo_config, "retrain_model", False)))
    return {"dynamics": model, "termination_low": low, "termination_high": high,
            "learned_termination": np.bool_(termination == "learned"),
            "observation_mean": np.asarray(normalizer.observation_mean, np.float32),
            "observation_std": np.asarray(normalizer.observation_std, np.float32),
            "reward_scale": np.float32(normalizer.reward_scale), "reward_bias": np.float32(normalizer.reward_bias)}


def rollout(act: Callable, state: Any, buffer: ModelBuffer, data: dict[str, Any], key: jax.Array, horizon: int,
            rollout_batch: int, penalty_coef: float, uncertainty_kind: str = "aleatoric") -> ModelBuffer:
    """`rollout_batch` model rollouts of `horizon` steps from dataset states, written into `buffer`."""
    model_data = data["model_rollouts"]
    model = model_data["dynamics"]
    mean, std = model_data["observation_mean"], model_data["observation_std"]
    start_key, steps_key = jax.random.split(key)
    starts = data["observations"][jax.random.randint(start_key, (rollout_batch,), 0, data["observations"].shape[0])]

    def step(carry, step_key):
        observations, alive = carry
        act_key, model_key = jax.random.split(step_key)
        actions = act(state, observations, act_key, False)
        raw = observations * std + mean
        next_raw, rewards, member_mean, member_std, terminal_probability = sample_elite(model, raw, actions, model_key)
        uncertainty = model_uncertainty(model, member_mean, member_std, uncertainty_kind)
        outside = (next_raw < model_data["termination_low"]) | (next_raw > model_data["termination_high"])
        terminal = outside.any(-1) | ~jnp.isfinite(next_raw).all(-1)
        if terminal_probability is not None:  # the terminal head (elites' mean, module docstring), when asked for
            terminal |= model_data.get("learned_termination", False) & (terminal_probability > 0.5)
        next_observations = (jnp.nan_to_num(next_raw) - mean) / std
        row = {"observations": observations, "actions": actions, "next_observations": next_observations,
               "rewards": (rewards - penalty_coef * uncertainty) * model_data["reward_scale"] + model_data["reward_bias"],
               "dones": terminal.astype(jnp.float32)}
        info = {"alive": alive, "uncertainty": uncertainty, "reward": rewards, "terminal": terminal}
        return (next_observations, alive & ~terminal), (row, info)

    _, (rows, info) = jax.lax.scan(step, (starts, jnp.ones(rollout_batch, bool)), jax.random.split(steps_key, horizon))
    alive = info["alive"].reshape(-1)
    count = alive.sum()
    capacity = buffer.rewards.shape[0]
    # alive rows go to consecutive ring positions; rows after a terminal go out of bounds and are dropped
    positions = jnp.where(alive, (buffer.pointer + jnp.cumsum(alive) - 1) % capacity, capacity)
    written = {name: getattr(buffer, name).at[positions].set(values.reshape(-1, *values.shape[2:]), mode="drop")
               for name, values in rows.items()}
    weight = alive.astype(jnp.float32) / jnp.maximum(count, 1)

    def mean_alive(values):
        return (values.reshape(-1).astype(jnp.float32) * weight).sum()

    statistics = jnp.stack([
        penalty_coef * mean_alive(info["uncertainty"]), mean_alive(info["uncertainty"]), mean_alive(info["reward"]),
        mean_alive(info["terminal"]), count / rollout_batch, jnp.minimum(buffer.size + count, capacity),
    ]).astype(jnp.float32)
    return buffer.replace(**written, pointer=(buffer.pointer + count) % capacity,
                          size=jnp.minimum(buffer.size + count, capacity), statistics=statistics)


def model_uncertainty(model, member_mean: jax.Array, member_std: jax.Array, kind: str) -> jax.Array:
    """One uncertainty per row over the elites: "aleatoric", the largest norm of an elite's
    predicted std (next state and reward); "disagreement", the largest distance of an elite's
    next-state mean from the elites' average, in raw state units (mopo fake_env.py, whose
    `normalize_diffs` is off; it takes both over all members, offrl over the elites)."""
    if kind == "disagreement":
        means = member_mean[model.elites, :, :-1]
        return jnp.linalg.norm(means - means.mean(axis=0), axis=-1).max(axis=0)
    return jnp.linalg.norm(member_std[model.elites], axis=-1).max(axis=0)


def real_rows(batch_size: int, real_ratio: float) -> int:
    """How many of a mixed batch's rows (its first ones) come from the dataset."""
    return int(round(batch_size * real_ratio))


def mixed_batch(data: dict[str, Any], buffer: ModelBuffer, key: jax.Array, batch_size: int, real_ratio: float,
                sample_real: Callable) -> Batch:
    real_size = real_rows(batch_size, real_ratio)
    model_size = batch_size - real_size
    real_key, model_key = jax.random.split(key)
    parts = []
    if real_size:
        real = sample_real(data, real_key, real_size)
        parts.append({name: getattr(real, name) for name in FIELDS})
    if model_size:
        index = jax.random.randint(model_key, (model_size,), 0, jnp.maximum(buffer.size, 1))
        parts.append({name: getattr(buffer, name)[index] for name in FIELDS})
    return Batch(**{name: jnp.concatenate([part[name] for part in parts]) for name in FIELDS})


def next_observation_sampler(model_data: dict[str, Any]) -> Callable:
    """`sample(observations, actions, key, num_samples)`: every elite's next-observation samples,
    (num_samples, num_elites, batch, observation_dim), in the algorithm's observation units."""
    model, mean, std = model_data["dynamics"], model_data["observation_mean"], model_data["observation_std"]

    def sample(observations, actions, key, num_samples):
        raw = sample_elite_next_observations(model, observations * std + mean, actions, key, num_samples)
        return (raw - mean) / std

    return sample


def penalise_model_rows(penalty_fn: Callable, state: Any, batch: Batch, real_size: int, data: dict[str, Any],
                        key: jax.Array, config: Any) -> tuple[Batch, jax.Array]:
    """The batch with `penalty_fn`'s penalty subtracted from its model rows' rewards (rows from
    `real_size` on; dataset rows are never penalised), and the penalty of each model row."""
    penalty = penalty_fn(state, batch.observations[real_size:], batch.actions[real_size:],
                         next_observation_sampler(data["model_rollouts"]), key, config)
    return batch.replace(rewards=batch.rewards.at[real_size:].add(-penalty)), penalty


def model_based_update(algo: ModuleType, config: Any, sample_real: Callable) -> Callable:
    """`one_update(state, key, data, size)` for an algorithm with `rollout_settings`: rollout when
    due, a mixed batch, the algorithm's update, and the rollout statistics in its metrics."""
    settings = algo.rollout_settings(config)
    penalty_fn = getattr(algo, "model_reward_penalty", None)

    def one_update(state, key, data, size):
        if size is not None:
            raise ConfigError(f"Algorithm '{algo.NAME}' trains on model rollouts of a fixed dataset; expected offline training.")
        rollout_key, batch_key = jax.random.split(key)
        buffer = state.model_buffer
        buffer = jax.lax.cond(
            buffer.updates % settings.rollout_every == 0,
            lambda b: rollout(algo.act, state, b, data, rollout_key, settings.horizon, settings.rollout_batch,
                              settings.penalty_coef, settings.uncertainty),
            lambda b: b, buffer)
        buffer = buffer.replace(updates=buffer.updates + 1)
        batch = mixed_batch(data, buffer, batch_key, config.batch_size, settings.real_ratio, sample_real)
        penalty_metrics = {}
        real_size = real_rows(config.batch_size, settings.real_ratio)
        if penalty_fn is not None and real_size < config.batch_size:
            # a key of its own, so that the random streams of algorithms without the hook stay as they were
            batch, penalty = penalise_model_rows(penalty_fn, state, batch, real_size, data, jax.random.fold_in(batch_key, 1), config)
            penalty_metrics = {"model_reward_penalty": penalty.mean()}
        state, metrics = algo.update(state.replace(model_buffer=buffer), batch, config)
        return state, {**metrics, **penalty_metrics, **dict(zip(ROLLOUT_STATISTICS, buffer.statistics))}

    return one_update
