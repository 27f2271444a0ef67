"""Safe offline RL scores as DSRL defines them (liuzuxin/DSRL, dsrl/offline_env.py).

For a target cost (cost threshold) κ:
- normalised reward = (R - R_min) / (R_max - R_min), R_min/R_max the dataset's reference returns
  (DSRL's min/max_episode_reward; no factor 100, unlike D4RL's normalised score);
- normalised cost = (C + ε) / (κ + ε), with ε = 1 when κ = 0 and ε = 0 otherwise
  (`OfflineEnv.set_target_cost`), C the episode's summed cost;
- a policy is safe at κ when its normalised cost is <= 1. OSRL's tables average both numbers over
  several κ per task; `safe_table_row` does that for one run's evaluations.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from offrl.errors import ConfigError, DatasetError


def check_target_cost(target_cost: float | None, flag: str = "--target-cost") -> None:
    if target_cost is None:
        return
    if not (np.isfinite(target_cost) and target_cost >= 0):
        raise ConfigError(f"{flag} is {target_cost}; expected a non-negative cost threshold per episode.")


def parse_target_costs(text: str | None, flag: str = "--target-cost") -> list[float] | None:
    """'10,20,40' -> [10.0, 20.0, 40.0]; each must be a non-negative number."""
    if text is None:
        return None
    values = []
    for part in str(text).split(","):
        try:
            value = float(part)
        except ValueError:
            raise ConfigError(f"{flag} has {part.strip()!r}; expected non-negative numbers separated by commas, e.g. 10,20,40.") from None
        check_target_cost(value, flag)
        values.append(value)
    return values


def normalized_reward(returns, ref_min: float | None, ref_max: float | None):
    if ref_min is None or ref_max is None:
        raise DatasetError(
            "The dataset has no reference returns (ref_min_score, ref_max_score); expected both "
            "before DSRL's normalised reward can be computed."
        )
    if ref_max == ref_min:
        raise DatasetError("The dataset's ref_max_score equals its ref_min_score; expected them to differ.")
    return (np.asarray(returns, np.float64) - ref_min) / (ref_max - ref_min)


def normalized_cost(costs, target_cost: float):
    check_target_cost(target_cost)
    epsilon = 1.0 if target_cost == 0 else 0.0
    return (np.asarray(costs, np.float64) + epsilon) / (target_cost + epsilon)


def safe_record(returns, costs, target_cost: float, ref_min: float | None, ref_max: float | None) -> dict[str, Any]:
    """DSRL's numbers for one evaluation (per-episode returns and costs) at target cost κ."""
    cost = float(np.mean(normalized_cost(costs, target_cost)))
    record: dict[str, Any] = {"target_cost": float(target_cost), "normalized_cost": cost, "safe": cost <= 1.0}
    if ref_min is not None and ref_max is not None:
        record["normalized_reward"] = float(np.mean(normalized_reward(returns, ref_min, ref_max)))
    return record


def safe_table_row(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Average DSRL numbers over evaluations at several κ (OSRL's tables): mean normalised reward
    and cost, and safe when the mean normalised cost is <= 1."""
    if not records:
        raise ConfigError("No evaluations at a target cost to average; expected at least one.")
    cost = float(np.mean([r["normalized_cost"] for r in records]))
    row: dict[str, Any] = {"target_costs": [r["target_cost"] for r in records], "normalized_cost": cost, "safe": cost <= 1.0}
    if all("normalized_reward" in r for r in records):
        row["normalized_reward"] = float(np.mean([r["normalized_reward"] for r in records]))
    return row


def evaluate_at_target_costs(policy, env_id: str, target_costs: list[float], episodes: int, seed: int,
                             ref_min: float | None, ref_max: float | None) -> list[tuple[dict[str, Any], Any]]:
    """DSRL's numbers at each κ, with the rollout each came from. A policy that acts toward a target
    cost (`policy.conditions_on_target_cost`: CDT) is rolled out once per κ, conditioned on it, as OSRL
    evaluates CDT; any other policy once, scored at every κ."""
    from offrl.evaluate.rollout import evaluate_policy

    if getattr(policy, "conditions_on_target_cost", False):
        rollouts = [evaluate_policy(policy.at_target_cost(k), env_id, episodes, seed=seed) for k in target_costs]
    else:
        rollouts = [evaluate_policy(policy, env_id, episodes, seed=seed)] * len(target_costs)
    return [(safe_record(stats.returns, stats.costs, k, ref_min, ref_max) if stats.costs is not None else None, stats)
            for k, stats in zip(target_costs, rollouts)]
