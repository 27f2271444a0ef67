"""Make D4RL-style dataset suites for any Gymnasium env with a Box action space.

D4RL's recipe (Fu et al. 2020, "D4RL: Datasets for Deep Data-Driven Reinforcement Learning",
section 5 and appendix), with offrl's own SAC as the behaviour agent:

- train SAC online for `budget` environment steps, evaluating a snapshot of the agent every
  `snapshot_every` steps (its stochastic policy, the one that will be recorded);
- `random`: uniform random actions;
- `medium`: the snapshot whose evaluated return is closest to 0.4 of the way from the random
  policy's return to the final agent's (D4RL: "about a third" to a half of the expert). The
  fraction is taken from the random return, not from 0, so that it also means something for
  envs with negative returns (Pendulum); for locomotion the two barely differ. The provenance
  names the snapshot's step and its evaluated return;
- `medium-replay`: the replay buffer up to the medium snapshot, in collection order. An episode
  still running at the cut is kept, its last transition flagged as a timeout (truncated: the
  target bootstraps, which is right because the MDP did not end). Its size is the snapshot's
  step (capped to `size`, keeping the most recent transitions), not `size`, as in D4RL;
- `expert`: the final agent's stochastic policy;
- `medium-expert`: `medium` followed by `expert` (2 x size transitions, as in D4RL).

`ref_min_score` is the random policy's mean return and `ref_max_score` the expert policy's,
both over `max(10, eval_episodes)` episodes, and stored in every level of the suite. A level is
written atomically (`write_minari` renames a finished temporary directory into place); a rerun
skips the levels that already exist and says so, or replaces them with `overwrite`. A rerun that
still needs the agent trains it again (same seed; CPU runs are close to, not bit-for-bit, the
first) and measures the reference returns again, so levels written by different runs can carry
slightly different reference scores; regenerate the whole suite with `overwrite` to align them.
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from offrl.algos.online import sac
from offrl.data.collect import collect_transitions, complete_episode_returns, concatenate, dataset_name, replay_dataset
from offrl.data.dataset import Dataset, DatasetMetadata
from offrl.data.load import load_dataset
from offrl.data.minari_io import write_minari
from offrl.data.registry import datasets_root
from offrl.envs.factory import action_bounds, check_env_id, make_env
from offrl.errors import ConfigError, DatasetError
from offrl.evaluate.rollout import evaluate_policy
from offrl.train.configs import config_to_json
from offrl.train.online import OnlineConfig, make_stochastic_policy, train_online
from offrl.version import __version__

LEVELS = ("random", "medium", "medium-replay", "expert", "medium-expert")
_NEEDS_AGENT = ("medium", "medium-replay", "expert", "medium-expert")
MEDIUM_FRACTION = 0.4  # target of the medium snapshot: between a third and a half of the way


# ------------------------------------------------------------------------------- suites
def make_suite(
    env_id: str,
    levels: list[str],
    budget: int,
    size: int,
    seed: int = 0,
    data_dir: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    snapshot_every: int | None = None,
    start_steps: int | None = None,
    eval_episodes: int = 10,
    sac_config: Any = None,
    version: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Generate the requested levels for `env_id` and register them; return {level: directory}.

    `budget` is the behaviour agent's environment steps, `size` the transitions per level (see
    the module docstring for medium-replay and medium-expert). Levels that already exist are
    skipped (and reported through `log`) unless `overwrite`.
    """
    levels = _check_request(env_id, levels, budget, size, eval_episodes)
    root = datasets_root(data_dir, create=True)
    say = log or (lambda message: print(message))
    targets = {level: root / dataset_name(env_id, level, version) for level in levels}
    paths: dict[str, Path] = {}
    todo = []
    for level in levels:
        if (targets[level] / "data" / "metadata.json").exists() and not overwrite:
            say(f"{dataset_name(env_id, level, version)}: already exists at {targets[level]}; skipping "
                "(use overwrite to regenerate).")
            paths[level] = targets[level]
        else:
            todo.append(level)
    if not todo:
        return paths

    started = time.perf_counter()
    low, high = action_bounds(env_id)
    episodes = max(10, eval_episodes)
    with SuiteProgress(progress) as bar:
        random_policy = uniform_policy(low, high)
        random_returns = _evaluate(random_policy, env_id, episodes, seed + 1)
        say(f"random policy: mean return {random_returns.mean():.1f} over {episodes} episodes")

        agent = None
        if any(level in _NEEDS_AGENT for level in todo):
            agent = _train_agent(env_id, budget, seed, snapshot_every, start_steps, eval_episodes, sac_config, bar, say)
        expert_returns = None
        if agent is not None:
            expert_returns = _evaluate(agent["expert_policy"], env_id, episodes, seed + 2)
            say(f"expert policy (final, stochastic): mean return {expert_returns.mean():.1f}")
            medium = _pick_medium(agent["snapshots"], float(random_returns.mean()), float(expert_returns.mean()))
            agent["medium"] = medium
            say(f"medium: snapshot at step {medium['step']} with evaluated return {medium['return']:.1f}")
        ref_max = float(expert_returns.mean()) if expert_returns is not None else _existing_ref_max(root, env_id, version)
        base = {
            "env_id": env_id,
            "env_version": _env_version(env_id),
            "offrl_version": _offrl_version(),
            "gymnasium_version": gym.__version__,
            "seed": seed,
            "budget": budget,
            "size": size,
            "random_return": float(random_returns.mean()),
            "expert_return": None if expert_returns is None else float(expert_returns.mean()),
            "reference_episodes": episodes,
            "machine": f"{platform.machine()} {platform.system()}, {platform.python_version()}",
            "generated_by": "offrl.suites.make_suite",
            "algorithm_name": "offrl SAC (Haarnoja et al. 2018) behaviour agent",
        }
        if agent is not None:
            base.update(agent["provenance"])
            base["medium_snapshot_step"] = agent["medium"]["step"]
            base["medium_snapshot_return"] = agent["medium"]["return"]

        made: dict[str, Dataset] = {}

        def metadata(level: str) -> DatasetMetadata:
            return DatasetMetadata(
                name=dataset_name(env_id, level, version), env_id=env_id,
                ref_min_score=float(random_returns.mean()), ref_max_score=ref_max,
                action_low=low, action_high=high,
            )

        def record(level: str, policy, level_seed: int) -> Dataset:
            task = bar.add(f"recording {level}", size)
            dataset = collect_transitions(
                env_id, policy, size, seed=level_seed, name=dataset_name(env_id, level, version),
                on_step=lambda n, r: bar.update(task, n, r),
            )
            bar.update(task, size, None)
            return dataset

        behaviour_returns: dict[str, float] = {}
        order = [level for level in LEVELS if level in todo]
        for level in order:
            if level == "random":
                dataset = made.get("random") or record("random", random_policy, seed + 10)
                description = "uniform random actions"
            elif level == "medium":
                dataset = made.get("medium") or record("medium", agent["policy"](agent["medium"]["state"]), seed + 11)
                description = (f"SAC snapshot at step {agent['medium']['step']} (evaluated return "
                               f"{agent['medium']['return']:.1f}), stochastic")
            elif level == "expert":
                dataset = made.get("expert") or record("expert", agent["expert_policy"], seed + 12)
                description = f"final SAC agent after {budget} steps, stochastic"
            elif level == "medium-replay":
                dataset = replay_dataset(agent["replay"], agent["medium"]["step"], size, metadata(level))
                description = (f"SAC replay buffer up to step {agent['medium']['step']} in collection order; "
                               "the episode running at the cut is kept and flagged as a timeout")
            else:  # medium-expert
                medium = made.get("medium") or record("medium", agent["policy"](agent["medium"]["state"]), seed + 11)
                expert = made.get("expert") or record("expert", agent["expert_policy"], seed + 12)
                made["medium"], made["expert"] = medium, expert
                dataset = concatenate(medium, expert, metadata(level))
                description = "medium followed by expert"
            made[level] = dataset
            returns = complete_episode_returns(dataset)
            behaviour_returns[level] = float(returns.mean())
            provenance = {
                **base,
                "level": level,
                "behaviour": description,
                "behaviour_return": behaviour_returns[level],
                "behaviour_returns_per_level": dict(behaviour_returns),
                "wall_seconds": time.perf_counter() - started,
                "summary": {"transitions": dataset.num_transitions, "episodes": dataset.num_episodes,
                            "mean_return": float(np.mean(dataset.episode_returns()))},
                "description": (f"offrl-generated D4RL-style '{level}' dataset for {env_id}: {description}; "
                                f"{dataset.num_transitions} transitions in {dataset.num_episodes} episodes."),
            }
            out = dataset.replace(metadata=DatasetMetadata(**{**asdict_shallow(metadata(level)), "provenance": provenance}))
            paths[level] = write_minari(out, dataset_name(env_id, level, version), root=root, overwrite=overwrite)
            say(f"{dataset_name(env_id, level, version)}: {dataset.num_transitions} transitions, "
                f"{dataset.num_episodes} episodes, behaviour return {behaviour_returns[level]:.1f} -> {paths[level]}")
    return {level: paths[level] for level in levels}


def asdict_shallow(metadata: DatasetMetadata) -> dict[str, Any]:
    return {name: getattr(metadata, name) for name in DatasetMetadata.__dataclass_fields__}


def check_box_env(env_id: str) -> None:
    """Refuse unknown ids, discrete or unbounded action spaces and non-flat observations."""
    check_env_id(env_id)
    action_bounds(env_id)  # refuses discrete and unbounded action spaces
    env = make_env(env_id)
    try:
        space = env.observation_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise ConfigError(f"Environment {env_id!r} has observation space {space}; expected a flat Box space.")
    finally:
        env.close()


def _check_request(env_id: str, levels: list[str], budget: int, size: int, eval_episodes: int) -> list[str]:
    check_box_env(env_id)
    if isinstance(levels, str):
        levels = [levels]
    levels = list(dict.fromkeys(levels))
    unknown = [level for level in levels if level not in LEVELS]
    if unknown or not levels:
        raise ConfigError(f"Unknown dataset level {unknown[0] if unknown else '(none)'!r}; expected some of: {', '.join(LEVELS)}.")
    if size <= 0:
        raise ConfigError(f"--size is {size}; expected a positive number of transitions per level.")
    if budget <= 0 and any(level in _NEEDS_AGENT for level in levels):
        raise ConfigError(f"--budget is {budget}; expected a positive number of environment steps for the behaviour agent.")
    if eval_episodes <= 0:
        raise ConfigError(f"--eval-episodes is {eval_episodes}; expected a positive integer.")
    return levels


def uniform_policy(low: np.ndarray, high: np.ndarray):
    def policy(observations: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(low, high, size=(len(observations), len(low))).astype(np.float32)

    return policy


def _evaluate(policy, env_id: str, episodes: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return evaluate_policy(lambda observations: policy(observations, rng), env_id, episodes, seed=seed).returns


def _train_agent(env_id, budget, seed, snapshot_every, start_steps, eval_episodes, sac_config, bar, say) -> dict[str, Any]:
    config = sac_config or sac.Config()
    snapshot_every = snapshot_every or max(budget // 20, 1)
    # CleanRL's SAC starts learning after 5,000 random steps; never more than a tenth of a small budget.
    start_steps = min(5_000, budget // 10) if start_steps is None else start_steps
    online = OnlineConfig(total_steps=budget, start_steps=start_steps, snapshot_every=snapshot_every,
                          eval_episodes=eval_episodes, seed=seed)
    task = bar.add("training SAC", budget)
    trained_at = time.perf_counter()
    result = train_online(
        sac, config, env_id, online,
        on_progress=lambda step, info: bar.update(task, step, info.get("train_return")),
        on_snapshot=lambda snapshot: say(f"snapshot at step {snapshot.step}: evaluated return {snapshot.return_mean:.1f}"),
    )
    low, high = result.action_low, result.action_high
    snapshots = [{"step": s.step, "return": s.return_mean, "state": s.state} for s in result.snapshots]
    if not snapshots or snapshots[-1]["step"] != result.buffer_rows:
        snapshots.append({"step": result.buffer_rows, "return": None, "state": result.state})
    return {
        "snapshots": snapshots,
        "replay": result.replay(),
        "policy": lambda state: make_stochastic_policy(sac, state, low, high),
        "expert_policy": make_stochastic_policy(sac, result.state, low, high),
        "provenance": {
            "behaviour_agent": "sac",
            "sac_config": config_to_json(config),
            "online_config": asdict(online),
            "snapshot_returns": [[s["step"], s["return"]] for s in snapshots],
            "train_wall_seconds": time.perf_counter() - trained_at,
            "train_compile_seconds": result.compile_seconds,
        },
    }


def _pick_medium(snapshots: list[dict[str, Any]], random_return: float, final_return: float) -> dict[str, Any]:
    """The snapshot whose return is closest to MEDIUM_FRACTION of the way from random to final."""
    evaluated = [s for s in snapshots if s["return"] is not None]
    if not evaluated:
        raise DatasetError("The behaviour agent has no evaluated snapshot; expected snapshot_every <= budget.")
    span = final_return - random_return
    if span <= 0:
        raise DatasetError(
            f"The behaviour agent did not beat the random policy (final return {final_return:.1f} <= random "
            f"{random_return:.1f}); expected a larger --budget for a meaningful medium level."
        )
    target = random_return + MEDIUM_FRACTION * span
    best = min(evaluated, key=lambda s: abs(s["return"] - target))
    return {**best, "fraction": (best["return"] - random_return) / span}


def _existing_ref_max(root: Path, env_id: str, version: int) -> float | None:
    """Without an agent (only `random` requested), reuse the suite's expert return if a level exists."""
    for level in LEVELS:
        path = root / dataset_name(env_id, level, version)
        if level != "random" and (path / "data" / "metadata.json").exists():
            try:
                return load_dataset(path).metadata.ref_max_score
            except DatasetError:
                continue
    return None


def _env_version(env_id: str) -> int | None:
    return check_env_id(env_id).version


def _offrl_version() -> str:
    return __version__


class SuiteProgress:
    """rich progress: one bar per phase, showing the behaviour agent's current return."""

    def __init__(self, enabled: bool):
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=Console(stderr=True), disable=not enabled,
        )

    def __enter__(self) -> "SuiteProgress":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.progress.__exit__(*exc_info)

    def add(self, description: str, total: int):
        return self.progress.add_task(description, total=total, status="")

    def update(self, task, completed: int, episode_return: float | None) -> None:
        status = "" if episode_return is None else f"return {episode_return:.1f}"
        self.progress.update(task, completed=completed, status=status)
