"""The online engine: any algorithm that can act stochastically, trained in a Gymnasium vector env.

It keeps the fused design of the offline engine. The replay buffer is preallocated on the device;
one compiled call per environment step inserts the new transitions, runs `updates_per_step`
algorithm updates per environment transition (a `lax.scan` from `make_fused_update`, sampling
with the traced buffer size) and computes the next actions. The buffer is donated, so it is
updated in place. The host only steps the environments.

Actions live in [-1, 1] inside the algorithm and the buffer, and are mapped affinely to the
environment's bounds. Terminations are stored as `dones = 1` (no bootstrap); time-limit
truncations as `dones = 0` with `timeouts = 1` (bootstrap). With same-step autoreset, the true
final observation of a finished sub-env comes from `infos["final_obs"]`.

Constrained tasks: an env that reports a step cost in `info["cost"]` (offrl/envs/torque_cost.py,
velocity_cost.py) has it recorded per transition, and an algorithm that declares
`EXTRA_FIELDS = ("costs",)` (SAC-Lag) gets a `costs` column in its replay buffer and batches; it is
refused on an env without costs. Training episodes' summed costs are kept beside their returns.

Every `snapshot_every` environment steps the engine copies the agent's state to the host and
evaluates its stochastic policy; the snapshots (and a callback) let a caller pick checkpoints,
such as D4RL's `medium` one. `OnlineResult.replay()` returns the buffer in insertion order with
the sub-env index of each row, enough to rebuild episodes (D4RL's `medium-replay`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from offrl.envs.factory import action_bounds, make_vector_env
from offrl.errors import ConfigError
from offrl.evaluate.rollout import evaluate_policy, vector_step_costs
from offrl.train.fused import make_fused_update
from offrl.train.initial_state import init_state
from offrl.types import Spec

REPLAY_FIELDS = ("observations", "actions", "rewards", "next_observations", "dones", "timeouts")


@dataclass(frozen=True)
class OnlineConfig:
    total_steps: int = 1_000_000  # environment transitions, summed over the sub-envs
    num_envs: int = 1  # SAC's reference setting is one environment
    start_steps: int = 10_000  # uniform random actions before learning (SpinningUp's SAC default)
    updates_per_step: int = 1  # updates per environment transition (UTD ratio; SAC: 1)
    buffer_size: int | None = None  # None: keep every transition (total_steps)
    seed: int = 0
    snapshot_every: int = 0  # environment steps between snapshots (0: none)
    eval_episodes: int = 10  # episodes per snapshot evaluation

    def validate(self) -> None:
        for name in ("total_steps", "num_envs", "eval_episodes"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"--{name.replace('_', '-')} is {getattr(self, name)}; expected a positive integer.")
        for name in ("start_steps", "updates_per_step", "snapshot_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} is {getattr(self, name)}; expected 0 or a positive integer.")
        if self.buffer_size is not None and self.buffer_size < self.num_envs:
            raise ConfigError(f"--buffer-size is {self.buffer_size}; expected at least --num-envs ({self.num_envs}).")


@dataclass
class Snapshot:
    """The agent at `step` environment transitions, with its stochastic policy's evaluation."""

    step: int
    state: Any  # host copy of the algorithm state
    return_mean: float
    returns: np.ndarray
    episodes_finished: int
    train_return: float | None  # mean return of the last 10 training episodes
    cost_mean: float | None = None  # the evaluation's mean episode cost, on envs that report costs
    costs: np.ndarray | None = None


@dataclass
class OnlineResult:
    state: Any
    snapshots: list[Snapshot]
    buffer: dict[str, np.ndarray]  # host copy, insertion order (see `replay`)
    env_index: np.ndarray  # the sub-env each buffer row came from
    buffer_rows: int  # rows inserted (may exceed the buffer size when it wrapped)
    episode_returns: list[float]  # training episodes, in the order they finished
    episode_costs: list[float] | None  # their summed costs, on envs that report costs (else None)
    action_low: np.ndarray
    action_high: np.ndarray
    wall_seconds: float
    compile_seconds: float
    metrics: dict[str, float] = field(default_factory=dict)

    def replay(self) -> dict[str, np.ndarray]:
        """Buffer rows in insertion order, actions in env units, plus `env_index` per row.

        Raises if the buffer wrapped: the oldest rows are gone and the order is broken.
        """
        capacity = len(self.buffer["rewards"])
        if self.buffer_rows > capacity:
            raise ConfigError(
                f"The replay buffer wrapped ({self.buffer_rows} rows into {capacity}); "
                "expected buffer_size >= total_steps to read it back in insertion order."
            )
        n = self.buffer_rows
        rows = {name: values[:n] for name, values in self.buffer.items()}
        rows["actions"] = np.clip(unscale_actions(rows["actions"], self.action_low, self.action_high),
                                  self.action_low, self.action_high)
        rows["env_index"] = self.env_index[:n]
        return rows


def unscale_actions(actions, low, high):
    """[-1, 1] -> environment bounds (works on NumPy and JAX arrays)."""
    return low + (actions + 1.0) * 0.5 * (high - low)


def allocate_buffer(capacity: int, spec: Spec, fields: tuple[str, ...] = REPLAY_FIELDS) -> dict[str, jax.Array]:
    """A zero-filled replay buffer on the device: (capacity, dim) observations/actions, (capacity,) scalars."""
    def shape(name: str) -> tuple[int, ...]:
        if "observations" in name:
            return (capacity, spec.observation_dim)
        return (capacity, spec.action_dim) if name in ("actions", "next_actions") else (capacity,)

    return {name: jnp.zeros(shape(name), jnp.float32) for name in fields}


def insert_rows(buffer: dict[str, jax.Array], transitions: dict[str, jax.Array], position: jax.Array) -> dict[str, jax.Array]:
    """Write the transitions (one row per sub-env) at `position`, wrapping around the capacity (jit-able)."""
    capacity = next(iter(buffer.values())).shape[0]
    count = next(iter(transitions.values())).shape[0]
    rows = (position + jnp.arange(count)) % capacity
    return {name: buffer[name].at[rows].set(transitions[name]) for name in buffer}


def step_envs(envs: Any, observations: np.ndarray, actions: np.ndarray, low: np.ndarray, high: np.ndarray):
    """Step the vector env with actions in [-1, 1]; returns (transitions, next_observations, done, rewards).

    `transitions` holds raw (unnormalised) `observations, actions, rewards, next_observations,
    dones, timeouts`: `next_observations` is each sub-env's true next observation (the final one,
    from `infos["final_obs"]`, where an episode ended), `dones` the terminations (no bootstrap)
    and `timeouts` the truncations that were not also terminations; plus `costs` where the env
    reports `info["cost"]` (a finished sub-env's from its `final_info`). The returned
    `next_observations` are what the agent sees next (already the next episode's first where an
    episode ended). `rewards` are the env's own (float64), for exact episode returns.
    """
    actions = np.asarray(actions, np.float32)
    env_actions = np.clip(unscale_actions(actions, low, high), low, high)
    next_observations, rewards, terminated, truncated, infos = envs.step(env_actions)
    done = terminated | truncated
    true_next = np.array(next_observations, dtype=np.float32, copy=True)
    for i in np.flatnonzero(done):
        true_next[i] = infos["final_obs"][i]
    transitions = {
        "observations": np.asarray(observations, np.float32),
        "actions": actions,
        "rewards": np.asarray(rewards, np.float32),
        "next_observations": true_next,
        "dones": terminated.astype(np.float32),
        "timeouts": (truncated & ~terminated).astype(np.float32),
    }
    costs = vector_step_costs(infos, done)
    if costs is not None:
        transitions["costs"] = costs.astype(np.float32)
    return transitions, next_observations.astype(np.float32), done, rewards


def make_stochastic_policy(algo: ModuleType, state: Any, low: np.ndarray, high: np.ndarray,
                           deterministic: bool = False) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
    """`policy(observations, rng) -> env actions` for `collect_episodes`; randomness drawn from `rng`."""
    low_j, high_j = jnp.asarray(low), jnp.asarray(high)

    @jax.jit
    def act(state, observations, key):
        return unscale_actions(algo.act(state, observations, key, deterministic), low_j, high_j)

    def policy(observations: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        key = jax.random.PRNGKey(int(rng.integers(0, 2**31 - 1)))
        return np.asarray(act(state, jnp.asarray(observations, jnp.float32), key))

    return policy


def evaluate_stochastic(algo: ModuleType, state: Any, env_id: str, low, high, num_episodes: int, seed: int):
    policy = make_stochastic_policy(algo, state, low, high)
    rng = np.random.default_rng(seed)
    return evaluate_policy(lambda observations: policy(observations, rng), env_id, num_episodes, seed=seed)


def train_online(
    algo: ModuleType,
    algo_config: Any,
    env_id: str,
    online: OnlineConfig,
    on_snapshot: Callable[[Snapshot], None] | None = None,
    on_progress: Callable[[int, dict[str, Any]], None] | None = None,
    initial_state: Any = None,
) -> OnlineResult:
    """Train `algo` online on `env_id` for `online.total_steps` environment transitions.

    `on_snapshot(snapshot)` is called at every snapshot; `on_progress(step, info)` about every
    1,000 transitions with `info["train_return"]` (mean of the last 10 finished episodes) and
    the latest averaged update metrics. `initial_state` lets a caller start from a trained agent
    (offline-to-online).
    """
    online.validate()
    if getattr(algo_config, "normalize_observations", False) or getattr(algo_config, "normalize_rewards", False):
        raise ConfigError(
            f"{algo.NAME}: normalize_observations/normalize_rewards must be False for online training; "
            "there is no dataset to fit the statistics on."
        )
    low, high = action_bounds(env_id)
    num_envs = online.num_envs
    envs = make_vector_env(env_id, num_envs)
    spec = Spec(observation_dim=int(np.prod(envs.single_observation_space.shape)), action_dim=len(low))
    capacity = online.buffer_size or online.total_steps
    capacity = max(capacity, num_envs)

    key = jax.random.PRNGKey(online.seed)
    init_key, key = jax.random.split(key)
    state = initial_state if initial_state is not None else init_state(algo, init_key, spec, algo_config)
    records_costs = "costs" in getattr(algo, "EXTRA_FIELDS", ())
    buffer = allocate_buffer(capacity, spec, REPLAY_FIELDS + (("costs",) if records_costs else ()))
    env_index = np.zeros(capacity, dtype=np.int32)
    fused_update = make_fused_update(algo, algo_config, online.updates_per_step * num_envs)

    def learn_step(state, buffer, transitions, position, size, observations, key):
        buffer = insert_rows(buffer, transitions, position)
        update_key, act_key = jax.random.split(key)
        state, metrics = fused_update(state, buffer, update_key, size)
        actions = algo.act(state, observations, act_key, False)
        return state, buffer, actions, metrics

    insert_jit = jax.jit(insert_rows, donate_argnums=0)
    learn_jit = jax.jit(learn_step, donate_argnums=1)
    act_jit = jax.jit(lambda state, observations, key: algo.act(state, observations, key, False))

    rng = np.random.default_rng(online.seed)
    snapshots: list[Snapshot] = []
    episode_returns: list[float] = []
    episode_costs: list[float] = []
    running_returns = np.zeros(num_envs)
    running_costs = np.zeros(num_envs)
    has_costs = False
    metrics_sum: dict[str, float] = {}
    metrics_count = 0
    pending_metrics = []
    compile_seconds = 0.0
    started = time.perf_counter()
    try:
        observations, _ = envs.reset(seed=online.seed)
        observations = observations.astype(np.float32)
        actions = None
        step = 0  # transitions inserted so far
        updates_on = online.updates_per_step > 0
        next_snapshot = online.snapshot_every or None
        next_progress = 1_000
        while step < online.total_steps:
            if step < online.start_steps or actions is None or not updates_on:
                if step < online.start_steps:
                    actions = rng.uniform(-1.0, 1.0, size=(num_envs, spec.action_dim)).astype(np.float32)
                else:
                    key, act_key = jax.random.split(key)
                    actions = np.asarray(act_jit(state, observations, act_key))
            transitions, next_observations, done, rewards = step_envs(envs, observations, actions, low, high)
            step_costs = transitions.get("costs") if records_costs else transitions.pop("costs", None)
            has_costs = step_costs is not None
            if records_costs and not has_costs:
                raise ConfigError(f"{algo.NAME} trains on per-step costs but {env_id!r} reports no info['cost']; "
                                  "expected a constrained env such as offrl/PendulumTorqueCost-v0.")
            running_returns += rewards
            if has_costs:
                running_costs += step_costs
            for i in np.flatnonzero(done):
                episode_returns.append(float(running_returns[i]))
                running_returns[i] = 0.0
                if has_costs:
                    episode_costs.append(float(running_costs[i]))
                    running_costs[i] = 0.0
            position = step % capacity
            env_index[(position + np.arange(num_envs)) % capacity] = np.arange(num_envs)
            step += num_envs
            observations = next_observations
            learning = updates_on and step >= online.start_steps
            if learning:
                key, step_key = jax.random.split(key)
                call_started = time.perf_counter()
                size = jnp.asarray(min(step, capacity), jnp.int32)
                state, buffer, next_actions, metrics = learn_jit(
                    state, buffer, transitions, jnp.asarray(position, jnp.int32), size, observations, step_key
                )
                if compile_seconds == 0.0:
                    jax.block_until_ready(next_actions)
                    compile_seconds = time.perf_counter() - call_started
                actions = next_actions
                pending_metrics.append(metrics)
            else:
                buffer = insert_jit(buffer, transitions, jnp.asarray(position, jnp.int32))
                if step >= online.start_steps:
                    actions = None  # act with the policy from now on

            if pending_metrics and (len(pending_metrics) >= 100 or step >= online.total_steps):
                for record in jax.device_get(pending_metrics):
                    for name, value in record.items():
                        metrics_sum[name] = metrics_sum.get(name, 0.0) + float(value)
                metrics_count += len(pending_metrics)
                pending_metrics = []
            if on_progress is not None and (step >= next_progress or step >= online.total_steps):
                next_progress += 1_000
                info = {"train_return": _recent_mean(episode_returns), "episodes": len(episode_returns),
                        **({"train_cost": _recent_mean(episode_costs)} if has_costs else {}),
                        **{name: total / max(metrics_count, 1) for name, total in metrics_sum.items()}}
                on_progress(step, info)
            if next_snapshot is not None and step >= next_snapshot:
                next_snapshot += online.snapshot_every
                snapshot = _snapshot(algo, state, env_id, low, high, online, step, episode_returns)
                snapshots.append(snapshot)
                if on_snapshot is not None:
                    on_snapshot(snapshot)
    finally:
        envs.close()
    host_buffer = {name: np.asarray(values) for name, values in jax.device_get(buffer).items()}
    return OnlineResult(
        state=state,
        snapshots=snapshots,
        buffer=host_buffer,
        env_index=env_index,
        buffer_rows=step,
        episode_returns=episode_returns,
        episode_costs=episode_costs if has_costs else None,
        action_low=low,
        action_high=high,
        wall_seconds=time.perf_counter() - started,
        compile_seconds=compile_seconds,
        metrics={name: total / max(metrics_count, 1) for name, total in metrics_sum.items()},
    )


def _recent_mean(returns: list[float], count: int = 10) -> float | None:
    return float(np.mean(returns[-count:])) if returns else None


def _snapshot(algo, state, env_id, low, high, online, step, episode_returns) -> Snapshot:
    host_state = jax.device_get(state)
    stats = evaluate_stochastic(algo, host_state, env_id, low, high, online.eval_episodes,
                                seed=online.seed + 100_000 + step)
    return Snapshot(
        step=step,
        state=host_state,
        return_mean=stats.mean_return,
        returns=stats.returns,
        episodes_finished=len(episode_returns),
        train_return=_recent_mean(episode_returns),
        cost_mean=stats.mean_cost,
        costs=stats.costs,
    )
