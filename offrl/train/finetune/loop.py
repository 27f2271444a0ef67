"""The online loop of the fine-tuning engine: one compiled call per environment step.

Each call inserts the new transitions into the device replay buffer (donated, so updated in
place), runs `utd * num_envs` updates as one `lax.scan` on mixed batches and computes the next
exploratory actions. During a warm-up the call only inserts and acts: with the frozen policy, or
uniformly at random when the agent starts untrained (RLPD's `start_training`). The host steps the
environments, logs, evaluates and checkpoints (`records`) on the configured schedules.

Every training episode starts from a seeded reset: episode e of sub-env i is reset with
`episode_seed(seed, i, e)`, never from the environment's own autoreset stream. A run resumed from
a checkpoint taken at an episode boundary therefore meets the same episodes as the uninterrupted
run, and with the next actions and the metric sums stored in the checkpoint it continues bit for
bit (on CPU). A checkpoint taken mid-episode cannot hold the simulator's physical state: see
`records` for what such a resume does.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from offrl.data.transforms import training_arrays
from offrl.envs.factory import make_vector_env
from offrl.errors import ConfigError
from offrl.evaluate.rollout import evaluate_policy
from offrl.evaluate.scores import normalized_score
from offrl.train.divergence import all_finite, find_divergence
from offrl.train.extra_fields import PENDING, declared_fields, episode_extra_values, offline_extra_arrays, online_row_values
from offrl.train.finetune import records
from offrl.train.finetune.batches import make_mixed_update
from offrl.train.finetune.settings import decayed_config, reset_optimizers
from offrl.train.initial_state import init_state
from offrl.train.online import REPLAY_FIELDS, allocate_buffer, insert_rows, step_envs
from offrl.train.policy import Policy
from offrl.train.progress import TrainingProgress


def train_loop(algo, algo_config, dataset, normalizer, finetune, settings, run, env_id, initial_state,
               progress, on_log, resume) -> records.FinetuneResult:
    spec = dataset.spec
    meta = dataset.metadata
    has_reference = meta.ref_min_score is not None and meta.ref_max_score is not None
    extra = declared_fields(algo, algo_config)
    buffer_fields = REPLAY_FIELDS + extra
    num_envs = finetune.num_envs
    capacity = max(finetune.buffer_size or finetune.online_steps, num_envs)
    batch_size = algo_config.batch_size
    offline_rows = int(round(settings.offline_ratio * batch_size)) if settings.uses_offline_data else 0
    warmup, total = settings.warmup_steps, finetune.online_steps
    from_scratch = run.read_config().get("offline_run") is None

    # Offline data on the device, transformed exactly as the offline run saw it; read, never written.
    offline = None
    if offline_rows:
        arrays = training_arrays(dataset, normalizer)
        arrays.update(offline_extra_arrays(algo, algo_config, dataset, normalizer))
        offline = jax.device_put(arrays)

    key = jax.random.PRNGKey(finetune.seed)
    init_key, key = jax.random.split(key)
    template = init_state(algo, init_key, spec, algo_config)
    state = template if initial_state is None else initial_state
    if settings.reset_optimizers and initial_state is not None:
        state = reset_optimizers(state)
    buffer = allocate_buffer(capacity, spec, buffer_fields)
    for name in extra:
        if name in PENDING:
            buffer[name] = jnp.full((capacity,), PENDING[name], jnp.float32)
    step, rows, evals, episode_returns, train_seconds, wall_before = 0, 0, [], [], 0.0, 0.0
    env_episodes = [0] * num_envs  # the episode each sub-env is in (its reset seed: `episode_seed`)
    metrics_sum: dict[str, float] = {}
    metrics_count, next_actions = 0, None
    if resume:
        point, buffer = records.restore(run, template, buffer, capacity)
        if point is not None:
            state, key, step, rows = point.state, point.key, point.step, point.rows
            evals, episode_returns = point.evals, point.episode_returns
            train_seconds, wall_before = point.train_seconds, point.wall_seconds
            metrics_sum, metrics_count = point.metrics_sum, point.metrics_count
            if point.env_episodes is None:  # a checkpoint written before episodes were seeded
                env_episodes = [len(episode_returns) + 1] * num_envs
            else:
                # A sub-env stopped mid-episode starts its next episode; one at a boundary starts the
                # episode it was about to start. All at a boundary: the stored next actions too.
                env_episodes = [count + (steps > 0) for count, steps in zip(point.env_episodes, point.episode_steps)]
                if not any(point.episode_steps):
                    next_actions = point.next_actions

    low, high = normalizer.action_low, normalizer.action_high
    mean, std = normalizer.observation_mean, normalizer.observation_std
    reward_scale, reward_bias = np.float32(normalizer.reward_scale), np.float32(normalizer.reward_bias)
    online_config = algo_config
    fused = make_mixed_update(algo, settings.utd * num_envs, batch_size, offline_rows)

    def explore(state, observations, key):
        noise_key, act_key = jax.random.split(key)
        actions = algo.act(state, observations, act_key, False)
        if settings.exploration_noise > 0:
            actions = actions + settings.exploration_noise * jax.random.normal(noise_key, actions.shape)
        return jnp.clip(actions, -1.0, 1.0)

    def warmup_actions(state, observations, key):
        if from_scratch:  # an untrained agent collects with uniform actions (RLPD's start_training)
            return jax.random.uniform(key, (observations.shape[0], spec.action_dim), minval=-1.0, maxval=1.0)
        return explore(state, observations, key)

    def learn_step(state, buffer, offline, transitions, position, size, observations, key, progress):
        buffer = insert_rows(buffer, transitions, position)
        key, update_key, act_key = jax.random.split(key, 3)
        config = decayed_config(online_config, settings.decay, progress)
        state, metrics = fused(state, offline, buffer, update_key, size, config)
        return state, buffer, explore(state, observations, act_key), metrics, key

    def collect_step(state, buffer, transitions, position, observations, key):
        buffer = insert_rows(buffer, transitions, position)
        key, act_key = jax.random.split(key)
        return buffer, warmup_actions(state, observations, act_key), key

    def first_actions(state, observations, key, learning):
        key, act_key = jax.random.split(key)
        return (explore if learning else warmup_actions)(state, observations, act_key), key

    def write_field(buffer, name, index, values):
        return {**buffer, name: buffer[name].at[index].set(values, mode="drop")}

    learn_jit = jax.jit(learn_step, donate_argnums=1)
    collect_jit = jax.jit(collect_step, donate_argnums=1)
    first_jit = jax.jit(first_actions, static_argnums=3)
    write_jit = jax.jit(write_field, donate_argnums=0, static_argnums=1)
    policy = Policy(algo, state, normalizer)

    def evaluate(state, online_step):
        policy.state = state
        stats = evaluate_policy(policy, env_id, finetune.eval_episodes, seed=finetune.seed + 10_000)
        record = {"online_step": online_step, "step": online_step,  # `step` for tools that read any run
                  "return_mean": stats.mean_return, "return_std": float(np.std(stats.returns)),
                  "returns": stats.returns.tolist(), "lengths": stats.lengths.tolist()}
        if has_reference:
            scores = normalized_score(stats.returns, meta.ref_min_score, meta.ref_max_score)
            record["normalized_score"] = float(np.mean(scores))
            record["normalized_score_std"] = float(np.std(scores))
        run.append("eval.jsonl", record)
        return record

    def normalize(observations):
        return ((observations - mean) / std).astype(np.float32)

    started = time.perf_counter()
    compile_seconds = 0.0
    envs = make_vector_env(env_id, num_envs)
    if envs.single_observation_space.shape != (spec.observation_dim,) or envs.single_action_space.shape != (spec.action_dim,):
        envs.close()
        raise ConfigError(
            f"Environment {env_id!r} has observation shape {envs.single_observation_space.shape} and action shape "
            f"{envs.single_action_space.shape}; expected ({spec.observation_dim},) and ({spec.action_dim},) like the dataset."
        )
    pending, last_metrics = [], {}
    episode_globals = [[] for _ in range(num_envs)]  # global insert index of each row of the running episode
    episode_rewards = [[] for _ in range(num_envs)]  # its scaled rewards (for extra fields)
    running_returns = np.zeros(num_envs)
    last_checkpoint = None  # the newest checkpoint written by this process (named when a run diverges)
    try:
        with TrainingProgress(total, enabled=progress, description="fine-tuning") as bar:
            what = f"resumed at online step {step}" if resume else f"{total} online steps"
            bar.log(f"{algo.NAME} on {env_id} ({settings.mode}, offline ratio {settings.offline_ratio:g}, "
                    f"UTD {settings.utd}): {what} -> {run.path}")
            if not evals:
                evals.append(evaluate(state, 0))
                bar.report_eval(evals[-1])
            observations_raw, _ = envs.reset(seed=[episode_seed(finetune.seed, i, env_episodes[i]) for i in range(num_envs)])
            observations = normalize(observations_raw.astype(np.float32))
            if next_actions is None:
                actions, key = first_jit(state, observations, key, step >= warmup)
            actions = np.asarray(actions if next_actions is None else next_actions, np.float32)
            next_eval = (step // finetune.eval_every + 1) * finetune.eval_every if finetune.eval_every else None
            next_log = (step // finetune.log_every + 1) * finetune.log_every
            next_checkpoint = ((step // finetune.checkpoint_every + 1) * finetune.checkpoint_every
                               if finetune.checkpoint_every else None)
            bar.advance(step, {})
            while step < total:
                transitions, next_raw, done, raw_rewards = step_envs(envs, observations_raw, actions, low, high)
                if done.any():  # the autoreset's start is replaced by a seeded one
                    for i in np.flatnonzero(done):
                        env_episodes[i] += 1
                    seeds = [episode_seed(finetune.seed, i, env_episodes[i]) if done[i] else None for i in range(num_envs)]
                    next_raw = envs.reset(seed=seeds, options={"reset_mask": np.asarray(done, bool)})[0].astype(np.float32)
                transitions["observations"] = observations
                transitions["next_observations"] = normalize(transitions["next_observations"])
                transitions["rewards"] = transitions["rewards"] * reward_scale + reward_bias
                for name in extra:
                    transitions[name] = online_row_values(name, transitions)
                position = rows % capacity
                for i in range(num_envs):
                    episode_globals[i].append(rows + i)
                    episode_rewards[i].append(float(transitions["rewards"][i]))
                rows += num_envs
                step += num_envs
                observations_raw, observations = next_raw, normalize(next_raw)
                if step > warmup:
                    progress_fraction = jnp.float32(max(0, step - warmup) / max(1, total - warmup))
                    call_started = time.perf_counter()
                    state, buffer, actions, metrics, key = learn_jit(
                        state, buffer, offline, transitions, jnp.int32(position), jnp.int32(min(rows, capacity)),
                        observations, key, progress_fraction)
                    actions = np.asarray(actions)  # the host needs them now: this waits for the updates
                    if compile_seconds == 0.0:
                        compile_seconds = time.perf_counter() - call_started
                    train_seconds += time.perf_counter() - call_started
                    pending.append(metrics)
                else:
                    buffer, actions, key = collect_jit(state, buffer, transitions, jnp.int32(position), observations, key)
                    actions = np.asarray(actions)

                running_returns += raw_rewards
                for i in np.flatnonzero(done):
                    episode_returns.append(float(running_returns[i]))
                    running_returns[i] = 0.0
                    for name in (name for name in extra if name in PENDING):  # fields known at episode end
                        buffer = write_episode_field(write_jit, buffer, name, episode_globals[i], episode_rewards[i],
                                                      bool(transitions["dones"][i]), rows, capacity, online_config)
                    episode_globals[i], episode_rewards[i] = [], []

                if pending and (len(pending) >= 100 or step >= next_log or step >= total):
                    metrics_count, pending = add_metrics(metrics_sum, metrics_count, pending), []
                if step >= next_log or step >= total:
                    next_log += finetune.log_every
                    last_metrics = {name: value / max(metrics_count, 1) for name, value in metrics_sum.items()}
                    problem = find_divergence(last_metrics, state, bool(all_finite(state)), finetune.max_abs_q)
                    if problem is not None:
                        records.stop_diverged(run, step, problem, last_checkpoint)
                    log = {"online_step": step, **last_metrics,
                           "train_return": float(np.mean(episode_returns[-10:])) if episode_returns else None,
                           "episodes": len(episode_returns),
                           "env_steps_per_second": step / max(time.perf_counter() - started + wall_before, 1e-9)}
                    run.append("metrics.jsonl", log)
                    if on_log is not None:
                        on_log(log)
                    metrics_sum, metrics_count = {}, 0
                if next_eval is not None and step >= next_eval or step >= total:
                    while next_eval is not None and next_eval <= step:
                        next_eval += finetune.eval_every
                    evals.append(evaluate(state, step))
                    bar.report_eval(evals[-1])
                if next_checkpoint is not None and step >= next_checkpoint or step >= total:
                    while next_checkpoint is not None and next_checkpoint <= step:
                        next_checkpoint += finetune.checkpoint_every
                    # The sums of the log line in progress go into the checkpoint (added in the same order).
                    metrics_count, pending = add_metrics(metrics_sum, metrics_count, pending), []
                    last_checkpoint = records.save(
                        run, step, state, key, buffer, rows, capacity, evals, episode_returns, train_seconds,
                        wall_before + time.perf_counter() - started, records.EpisodePosition(
                            env_episodes=list(env_episodes), episode_steps=[len(indices) for indices in episode_globals],
                            next_actions=actions, metrics_sum=dict(metrics_sum), metrics_count=metrics_count))
                bar.advance(step, last_metrics)
    finally:
        envs.close()

    wall_seconds = wall_before + time.perf_counter() - started
    summary = run.update_summary(**records.finetune_summary(evals, episode_returns, meta, has_reference, step, settings,
                                            compile_seconds, train_seconds, wall_seconds))
    filled = min(rows, capacity)
    host_buffer = {name: np.asarray(values)[:filled] for name, values in jax.device_get(buffer).items()}
    return records.FinetuneResult(run.path, Policy(algo, state, normalizer), summary, state, settings, offline,
                          host_buffer, rows)


def add_metrics(metrics_sum: dict[str, float], count: int, pending: list) -> int:
    """Add the per-step metrics in `pending` to `metrics_sum` (in order); return the new count."""
    for record in jax.device_get(pending):
        for name, value in record.items():
            metrics_sum[name] = metrics_sum.get(name, 0.0) + float(value)
    return count + len(pending)


def episode_seed(seed: int, env_index: int, episode: int) -> int:
    """The reset seed of episode `episode` of sub-env `env_index` in a run with seed `seed`."""
    return int(np.random.SeedSequence((seed, env_index, episode)).generate_state(1)[0])


def write_episode_field(write_jit, buffer, name, globals_, scaled_rewards, terminal, rows, capacity, config):
    """Fill field `name` for a finished episode's rows that the buffer still holds."""
    values = episode_extra_values(name, np.asarray(scaled_rewards, np.float32), terminal, config)
    index = np.asarray(globals_, np.int64)
    alive = rows - index <= capacity  # rows not yet overwritten by newer transitions
    index, values = index[alive] % capacity, values[alive]
    size = pad_length(len(index))
    padded_index = np.full(size, capacity, np.int32)  # out of range: dropped by the scatter
    padded_index[: len(index)] = index
    padded_values = np.zeros(size, np.float32)
    padded_values[: len(values)] = values
    return write_jit(buffer, name, jnp.asarray(padded_index), jnp.asarray(padded_values))


def pad_length(n: int) -> int:
    return 1 << max(0, int(n - 1).bit_length())
