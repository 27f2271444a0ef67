"""Make a DSRL-style safe dataset for any Gymnasium env that reports a step cost (`info["cost"]`).

DSRL (Liu et al. 2023, liuzuxin/DSRL, scripts/train_trpol_expert.py) recorded Lagrangian agents
trained at a range of cost thresholds, so that the data covers the reward-cost trade-off from
cheap-and-poor to expensive-and-good. offrl's recipe does the same with its own agents:

- an unconstrained SAC agent (offrl/algos/online/sac.py): the high-reward, high-cost end, and the
  reward reference;
- one SAC-Lag agent (offrl/algos/online/sac_lag.py) per episode cost limit kappa, each with the
  per-step limit kappa (1 - gamma^L) / ((1 - gamma) L), L the env's episode length. Default limits
  (`DEFAULT_LIMIT_FRACTIONS`): 0.1, 0.25, 0.5 and 0.75 of the unconstrained agent's evaluated
  episode cost, rounded to 0.1, so that the agents spread between nearly free and unconstrained
  (DSRL's thresholds run from 5 to 100-200 on tasks whose unconstrained cost is a few hundred);
- every agent trains for `budget` environment steps with its own seed (`seed + index`, the
  unconstrained agent first), snapshots evaluated every budget / (2 S) steps; its S snapshots in
  the second half of training (the final one included, S = `snapshots_per_agent`; with
  `snapshot_span="whole"` snapshots every budget / S steps, over the whole of training) are recorded
  with the D4RL recipe's recorder (`collect_transitions`, stochastic policies), an equal share
  of `size` transitions each;
- the recordings are concatenated, agent after agent, into one dataset with per-step `costs`,
  written atomically as a Minari dataset named `<env>-safe-v<version>`;
- each agent, once trained and recorded, is staged under `<datasets>/.staging/<name>/` (its record
  and recordings), so that the same command, rerun after an interruption, resumes at the next
  agent; the staging is cleared when the dataset is written, and a different request starts afresh.

Reference scores, stored in the metadata and provenance:
- `ref_min_score`: the uniform random policy's mean return; `ref_max_score`: the best agent's (the
  highest evaluated mean return among the final agents), as the D4RL recipe does; DSRL's
  normalised reward is (R - ref_min) / (ref_max - ref_min) (offrl/evaluate/safe_scores.py). A
  budget too small for any agent to beat the random policy still writes the dataset (as the D4RL
  recipe's random and expert levels do), with the warning in the log and in
  `provenance["warnings"]`;
- DSRL's normalised cost needs a cost threshold kappa: `provenance["target_costs"]` holds the cost
  limits the agents were trained at (the thresholds to score policies at, as DSRL's tables average
  over several), and `provenance["dsrl_reference"]` DSRL's per-task numbers (dsrl/infos.py names:
  min/max_episode_reward, the reference returns above; min/max_episode_cost, over the dataset's
  complete episodes, not those cut short by the recording's share of transitions).
The provenance also names each agent's cost limit, seed, evaluated return and cost, final
multiplier, recorded snapshots and the dataset's episode range it wrote.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import jax
import numpy as np

from offrl.algos.online import sac, sac_lag
from offrl.data.collect import collect_transitions, complete_episodes, concatenate_all, dataset_name
from offrl.data.d4rl_io import read_npz, write_npz
from offrl.data.dataset import Dataset, DatasetMetadata
from offrl.data.minari_io import write_minari
from offrl.data.registry import datasets_root
from offrl.envs.factory import action_bounds, check_env_id, make_env
from offrl.errors import ConfigError, DatasetError
from offrl.evaluate.rollout import EpisodeStats, evaluate_policy
from offrl.evaluate.safe_scores import check_target_cost
from offrl.suites.d4rl_recipe import SuiteProgress, asdict_shallow, check_box_env, uniform_policy
from offrl.train.configs import config_to_json
from offrl.train.online import OnlineConfig, make_stochastic_policy, train_online
from offrl.version import __version__

SAFE_LEVEL = "safe"  # the dataset's name: <env>-safe-v<version>
DEFAULT_LIMIT_FRACTIONS = (0.1, 0.25, 0.5, 0.75)  # of the unconstrained agent's episode cost
SNAPSHOTS_PER_AGENT = 2  # recorded per agent: evenly over the second half of training, the final included
# Where the snapshots lie: "second-half" (every budget / (2 S) steps, the last S), or "whole" (every budget / S
# steps): early snapshots add the cheap-and-poor end of the trade-off when Lagrangian agents have not met their
# limits within the budget (HalfCheetah at 60k steps: benchmarks/safe_table.py).
SNAPSHOT_SPANS = ("second-half", "whole")


def make_safe_dataset(
    env_id: str,
    budget: int,
    size: int,
    cost_limits: list[float] | None = None,
    seed: int = 0,
    data_dir: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    start_steps: int | None = None,
    eval_episodes: int = 10,
    agent_config: sac_lag.Config | None = None,
    snapshots_per_agent: int = SNAPSHOTS_PER_AGENT,
    snapshot_span: str = SNAPSHOT_SPANS[0],
    version: int = 0,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Train the behaviour agents, record and write the mixed dataset; return its directory.

    `budget` is each agent's environment steps, `size` the dataset's transitions (split evenly
    over agents and their recorded snapshots). `cost_limits` (episode costs) default to
    `DEFAULT_LIMIT_FRACTIONS` of the unconstrained agent's cost. `agent_config` sets the networks
    and optimisers of every agent (its SAC fields for the unconstrained one); its cost limit and
    episode length are set per agent. An existing dataset is kept (and reported through `log`)
    unless `overwrite`.
    """
    cost_limits, episode_length = _check_request(env_id, budget, size, cost_limits, eval_episodes, snapshots_per_agent)
    if snapshot_span not in SNAPSHOT_SPANS:
        raise ConfigError(f"--snapshot-span is {snapshot_span!r}; expected one of {', '.join(SNAPSHOT_SPANS)}.")
    say = log or (lambda message: print(message))
    root = datasets_root(data_dir, create=True)
    name = dataset_name(env_id, SAFE_LEVEL, version)
    target = root / name
    if (target / "data" / "metadata.json").exists() and not overwrite:
        say(f"{name}: already exists at {target}; skipping (use overwrite to regenerate).")
        return target

    started = time.perf_counter()
    config = agent_config or sac_lag.Config()
    low, high = action_bounds(env_id)
    reference_episodes = max(10, eval_episodes)
    with SuiteProgress(progress) as bar:
        random_stats = _evaluate(uniform_policy(low, high), env_id, reference_episodes, seed + 1)
        say(f"random policy: mean return {random_stats.mean_return:.1f}, cost {random_stats.mean_cost:.1f}")

        # Each agent is staged (its record and recordings) once recorded, so that an interrupted run resumes at the
        # next agent: a budget that lets SAC pass HalfCheetah's speed limit takes hours per agent on a CPU.
        staging = _Staging(root / ".staging" / name, {
            "env_id": env_id, "budget": budget, "size": size, "cost_limits": cost_limits, "seed": seed,
            "start_steps": start_steps, "eval_episodes": eval_episodes, "agent_config": config_to_json(config),
            "snapshots_per_agent": snapshots_per_agent, "version": version, "offrl_version": __version__,
            # named only when not the default, so that requests staged before the option resume
            **({} if snapshot_span == SNAPSHOT_SPANS[0] else {"snapshot_span": snapshot_span})}, say)

        def train(index: int, cost_limit: float | None) -> dict[str, Any]:
            return _train_agent(env_id, index, cost_limit, episode_length, config, budget, seed + index, start_steps,
                                eval_episodes, reference_episodes, snapshots_per_agent, bar, say, snapshot_span)

        def record(index: int, agent: dict[str, Any], shares: list[int]) -> list[Dataset]:
            recordings = []
            for snapshot_index, snapshot in enumerate(agent["recorded_snapshots"]):
                share = shares[index * snapshots_per_agent + snapshot_index]
                task = bar.add(f"recording {agent['label']} @ {snapshot['step']}", share)
                recording = collect_transitions(
                    env_id, make_stochastic_policy(agent["algo"], snapshot.pop("state"), low, high), share,
                    seed=seed + 100 + 10 * index + snapshot_index, on_step=lambda n, r: bar.update(task, n, r))
                bar.update(task, share, None)
                snapshot.update(transitions=recording.num_transitions, episodes=recording.num_episodes,
                                mean_return=float(np.mean(recording.episode_returns())),
                                mean_cost=float(np.mean(recording.episode_costs())))
                recordings.append(recording)
            del agent["algo"]
            staging.save(index, agent, recordings)
            return recordings

        staged = staging.load(0)
        unconstrained = staged[0] if staged else train(0, None)
        unconstrained_cost = unconstrained["eval_cost"]
        if cost_limits is None:
            if unconstrained_cost <= 0:
                raise DatasetError(
                    f"The unconstrained agent pays no cost on {env_id} (evaluated episode cost 0); expected "
                    "--cost-limits to be given, as there is no trade-off to spread the default limits over.")
            cost_limits = sorted({round(fraction * unconstrained_cost, 1) for fraction in DEFAULT_LIMIT_FRACTIONS})
            limit_rule = (f"fractions {list(DEFAULT_LIMIT_FRACTIONS)} of the unconstrained agent's evaluated episode "
                          f"cost {unconstrained_cost:.2f}, rounded to 0.1")
            say(f"cost limits: {', '.join(f'{limit:g}' for limit in cost_limits)} ({limit_rule})")
        else:
            limit_rule = "given (--cost-limits)"
        shares = _split(size, (1 + len(cost_limits)) * snapshots_per_agent)
        agents, recordings = [], []
        for index, limit in enumerate([None, *cost_limits]):
            staged = staging.load(index) if index else staged
            if staged is None:
                agent = unconstrained if index == 0 else train(index, limit)
                staged = (agent, record(index, agent, shares))
            agent, agent_recordings = staged
            first_episode = sum(d.num_episodes for d in recordings)
            recordings += agent_recordings
            agent["episode_range"] = [first_episode, sum(d.num_episodes for d in recordings)]
            agents.append(agent)
            staged = None

        ref_max = max(agent["eval_return"] for agent in agents)
        warnings = []
        if ref_max <= random_stats.mean_return:
            warnings.append(f"no behaviour agent beats the random policy (best return {ref_max:.1f} <= random "
                            f"{random_stats.mean_return:.1f}): the reference scores are not a meaningful scale; expected a "
                            "larger --budget")
            say(f"warning: {warnings[-1]}.")
        metadata = DatasetMetadata(name=name, env_id=env_id, ref_min_score=random_stats.mean_return,
                                   ref_max_score=ref_max, action_low=low, action_high=high)
        dataset = concatenate_all(recordings, metadata)
        episode_costs = dataset.episode_costs()
        complete = complete_episodes(dataset)
        complete_costs = episode_costs[complete] if complete.any() else episode_costs
        provenance = {
            "env_id": env_id,
            "env_version": check_env_id(env_id).version,
            "offrl_version": __version__,
            "gymnasium_version": gym.__version__,
            "machine": f"{platform.machine()} {platform.system()}, {platform.python_version()}",
            "generated_by": "offrl.suites.make_safe_dataset",
            "level": SAFE_LEVEL,
            "seed": seed,
            "budget": budget,
            "size": size,
            "episode_length": episode_length,
            "cost_limits": list(cost_limits),
            "cost_limit_rule": limit_rule,
            "target_costs": list(cost_limits),
            "random_return": random_stats.mean_return,
            "random_cost": random_stats.mean_cost,
            "reference_episodes": reference_episodes,
            "dsrl_reference": {"min_episode_reward": random_stats.mean_return, "max_episode_reward": ref_max,
                               "min_episode_cost": float(complete_costs.min()),
                               "max_episode_cost": float(complete_costs.max())},
            "agents": agents,
            "warnings": warnings,
            "agent_config": config_to_json(config),
            "snapshots_per_agent": snapshots_per_agent,
            "snapshot_span": snapshot_span,
            "wall_seconds": time.perf_counter() - started,
            "summary": {"transitions": dataset.num_transitions, "episodes": dataset.num_episodes,
                        "mean_return": float(np.mean(dataset.episode_returns())),
                        "mean_cost": float(np.mean(episode_costs))},
            "description": (f"offrl-generated DSRL-style safe dataset for {env_id}: an unconstrained SAC agent and "
                            f"SAC-Lag agents at episode cost limits {', '.join(f'{k:g}' for k in cost_limits)}, "
                            f"{snapshots_per_agent} snapshots each, stochastic; {dataset.num_transitions} transitions "
                            f"in {dataset.num_episodes} episodes with per-step costs."),
        }
        out = dataset.replace(metadata=DatasetMetadata(**{**asdict_shallow(metadata), "provenance": provenance}))
        path = write_minari(out, name, root=root, overwrite=overwrite)
        staging.clear()
    say(f"{name}: {dataset.num_transitions} transitions, {dataset.num_episodes} episodes, episode cost "
        f"{episode_costs.min():g}..{episode_costs.max():g} -> {path}")
    return path


class _Staging:
    """Finished agents of one request (record JSON and recordings .npz) under `directory`.

    A staged agent is reused only by the same request (env, budget, size, limits, seed, agent config,
    offrl version); another request clears the directory first and says so.
    """

    def __init__(self, directory: Path, request: dict[str, Any], say: Callable[[str], None]):
        self.directory, self.say = directory, say
        request_file = directory / "request.json"
        if request_file.exists() and json.loads(request_file.read_text()) != json.loads(json.dumps(request)):
            say(f"{directory}: staged agents of another request; starting again.")
            shutil.rmtree(directory)
        directory.mkdir(parents=True, exist_ok=True)
        request_file.write_text(json.dumps(request, indent=1))

    def save(self, index: int, agent: dict[str, Any], recordings: list[Dataset]) -> None:
        for part, recording in enumerate(recordings):
            write_npz(recording, self.directory / f"agent-{index}-{part}.npz")
        record = self.directory / f"agent-{index}.json"  # written last: its presence marks the agent complete
        record.with_suffix(".tmp").write_text(json.dumps({"agent": agent, "parts": len(recordings)}, indent=1,
                                                           default=_json_number))
        record.with_suffix(".tmp").replace(record)

    def load(self, index: int) -> tuple[dict[str, Any], list[Dataset]] | None:
        record = self.directory / f"agent-{index}.json"
        if not record.exists():
            return None
        staged = json.loads(record.read_text())
        self.say(f"{staged['agent']['label']}: staged in {self.directory}, reused")
        return staged["agent"], [read_npz(self.directory / f"agent-{index}-{part}.npz") for part in range(staged["parts"])]

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def _json_number(value: Any) -> Any:
    """NumPy scalars and arrays in an agent's record, as JSON numbers and lists."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def check_cost_limits(cost_limits: list[float] | None, flag: str = "--cost-limits") -> list[float] | None:
    """Sorted distinct limits; each a finite non-negative episode cost, and at least one."""
    if cost_limits is None:
        return None
    if not cost_limits:
        raise ConfigError(f"{flag} is empty; expected non-negative episode costs separated by commas, e.g. 5,10,20.")
    for limit in cost_limits:
        check_target_cost(float(limit), flag)
    return sorted({float(limit) for limit in cost_limits})


def reports_cost(env_id: str) -> bool:
    """Whether a step of `env_id` reports `info["cost"]` (one random step after a seeded reset)."""
    env = make_env(env_id)
    try:
        env.reset(seed=0)
        env.action_space.seed(0)
        return "cost" in env.step(env.action_space.sample())[4]
    finally:
        env.close()


def _check_request(env_id, budget, size, cost_limits, eval_episodes, snapshots_per_agent) -> tuple[list[float] | None, int]:
    check_box_env(env_id)
    if not reports_cost(env_id):
        raise ConfigError(f"--safe: {env_id!r} reports no step cost in info['cost']; expected a constrained env "
                          "such as offrl/PendulumTorqueCost-v0 or offrl/SafetyHopperVelocity-v1.")
    episode_length = check_env_id(env_id).max_episode_steps
    if not episode_length:
        raise ConfigError(f"--safe: {env_id!r} has no time limit (max_episode_steps); expected one, to turn episode "
                          "cost limits into per-step limits.")
    cost_limits = check_cost_limits(cost_limits)
    if budget <= 0:
        raise ConfigError(f"--budget is {budget}; expected a positive number of environment steps per behaviour agent.")
    if snapshots_per_agent <= 0:
        raise ConfigError(f"--snapshots-per-agent is {snapshots_per_agent}; expected a positive integer.")
    if budget < 2 * snapshots_per_agent:
        raise ConfigError(f"--budget is {budget}; expected at least {2 * snapshots_per_agent} steps "
                          f"({snapshots_per_agent} recorded snapshots in the second half of training).")
    agents = 1 + (len(DEFAULT_LIMIT_FRACTIONS) if cost_limits is None else len(cost_limits))
    if size < agents * snapshots_per_agent:
        raise ConfigError(f"--size is {size}; expected at least {agents * snapshots_per_agent} transitions "
                          f"(one per recorded snapshot of {agents} agents).")
    if eval_episodes <= 0:
        raise ConfigError(f"--eval-episodes is {eval_episodes}; expected a positive integer.")
    return cost_limits, int(episode_length)


def _split(total: int, parts: int) -> list[int]:
    """`total` in `parts` near-equal integers, the larger ones first."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _evaluate(policy, env_id: str, episodes: int, seed: int) -> EpisodeStats:
    rng = np.random.default_rng(seed)
    return evaluate_policy(lambda observations: policy(observations, rng), env_id, episodes, seed=seed)


def _train_agent(env_id, index, cost_limit, episode_length, config, budget, seed, start_steps, eval_episodes,
                 reference_episodes, snapshots_per_agent, bar, say, snapshot_span=SNAPSHOT_SPANS[0]) -> dict[str, Any]:
    """Train one agent (SAC when `cost_limit` is None, else SAC-Lag at that limit) and evaluate it."""
    if cost_limit is None:
        algo, label = sac, "unconstrained SAC"
        algo_config = sac.Config(**{f.name: getattr(config, f.name) for f in dataclasses.fields(sac.Config)})
    else:
        algo, label = sac_lag, f"SAC-Lag at cost limit {cost_limit:g}"
        algo_config = dataclasses.replace(config, cost_limit=float(cost_limit), max_episode_steps=episode_length)
    snapshot_every = max(budget // ((2 if snapshot_span == "second-half" else 1) * snapshots_per_agent), 1)
    # As the D4RL recipe: CleanRL's SAC starts learning after 5,000 random steps, never more than a tenth of the budget.
    start_steps = min(5_000, budget // 10) if start_steps is None else start_steps
    online = OnlineConfig(total_steps=budget, start_steps=start_steps, snapshot_every=snapshot_every,
                          eval_episodes=eval_episodes, seed=seed)
    task = bar.add(f"training {label}", budget)
    trained_at = time.perf_counter()
    result = train_online(algo, algo_config, env_id, online,
                          on_progress=lambda step, info: bar.update(task, step, info.get("train_return")))
    stats = _evaluate(make_stochastic_policy(algo, result.state, result.action_low, result.action_high),
                      env_id, reference_episodes, seed + 2)
    earlier = [s for s in result.snapshots if s.step < result.buffer_rows]  # the final state is recorded below
    earlier = earlier[max(0, len(earlier) - (snapshots_per_agent - 1)):] if snapshots_per_agent > 1 else []
    recorded = [{"step": s.step, "eval_return": s.return_mean, "eval_cost": s.cost_mean, "state": s.state} for s in earlier]
    recorded.append({"step": result.buffer_rows, "eval_return": stats.mean_return, "eval_cost": stats.mean_cost,
                     "state": jax.device_get(result.state)})
    multiplier = None
    if cost_limit is not None:
        multiplier = float(sac_lag.multiplier_value(result.state.multiplier))
    say(f"{label}: evaluated return {stats.mean_return:.1f}, episode cost {stats.mean_cost:.1f}"
        + ("" if multiplier is None else f", multiplier {multiplier:.3g}"))
    return {
        "label": label,
        "algo": algo,
        "algorithm": algo.NAME,
        "cost_limit": cost_limit,
        "cost_q_limit": None if cost_limit is None else sac_lag.cost_q_limit(algo_config),
        "seed": seed,
        "budget": budget,
        "eval_return": stats.mean_return,
        "eval_cost": stats.mean_cost,
        "eval_episodes": reference_episodes,
        "final_multiplier": multiplier,
        "train_cost_last_10": None if not result.episode_costs else float(np.mean(result.episode_costs[-10:])),
        "snapshot_evaluations": [[s.step, s.return_mean, s.cost_mean] for s in result.snapshots],
        "recorded_snapshots": recorded,  # each one's "state" is dropped once it is recorded
        "online_config": dataclasses.asdict(online),
        "train_wall_seconds": time.perf_counter() - trained_at,
        "train_compile_seconds": result.compile_seconds,
    }
