"""Choosing the best configuration per (algorithm, dataset) without looking at the test episodes.

The test score of a run is its FINAL evaluation (summary.json `final_normalized_score`, on
environment seeds s + 10_000 + i). A configuration chosen by that same number would report an
optimistically biased score: the maximum of noisy estimates. So the criterion is computed from
other episodes:

- "validation" (default): after training, each seed's final policy is rolled out on separate
  validation environment seeds (offrl.sweep.trial.validation_env_seed, disjoint from the test
  seeds). The criterion is the mean over seeds of the mean validation score. Given the trained
  policies, the test episodes are independent of the validation episodes, so the chosen
  configuration's test score is an unbiased estimate of its performance (the usual validation /
  test split). Cost: `episodes` extra episodes per seed.
- "last_evals": the mean over seeds of the scores of the `last` evaluations BEFORE the final one
  (intermediate checkpoints; free, no extra rollouts). Those are other policies' episodes, but
  the engine evaluates every step on the same environment seeds as the final test evaluation,
  so they share its initial states: a weaker separation, offered when rollouts are expensive.

Both use the environment (as D4RL-style tuning does); neither is an offline-only criterion.
Scores are normalised scores when the dataset has reference returns, raw returns otherwise.
Only configurations whose seeds all finished are eligible; the others are listed with why.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from offrl.sweep.index import SweepIndex, read_json, trial_dir, trial_state

CRITERIA_EXPLAINED = {
    "validation": "mean over seeds of the final policy's score on validation episodes (environment seeds "
                  "disjoint from the test evaluation's)",
    "last_evals": "mean over seeds of the scores of the last {last} evaluations before the final one",
}


def _score(record: dict[str, Any], key_normalized: str, key_raw: str) -> tuple[float | None, str]:
    if record.get(key_normalized) is not None:
        return float(record[key_normalized]), "normalized score"
    if record.get(key_raw) is not None:
        return float(record[key_raw]), "return"
    return None, "none"


def trial_scores(directory: Path, trial: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """The criterion and the final (test) score of one finished trial, per seed and averaged."""
    selection = trial["selection"]
    seeds = [str(seed) for seed in trial["seeds"]]
    finals, metrics = [], set()
    for seed in seeds:
        summary = read_json(directory / f"seed_{seed}" / "summary.json") or {}
        value, metric = _score(summary, "final_normalized_score", "final_return")
        finals.append(value)
        metrics.add(metric)
    criteria: list[float | None] = []
    why = None
    if selection["criterion"] == "validation":
        per_seed = (record.get("validation") or {}).get("per_seed", {})
        for seed in seeds:
            value, metric = _score(per_seed.get(seed, {}), "normalized_score", "return_mean")
            criteria.append(value)
            metrics.add(metric)
        if any(value is None for value in criteria):
            why = "no validation rollouts recorded for every seed"
    else:
        last = selection["last"]
        for seed in seeds:
            evals = _eval_records(directory / f"seed_{seed}" / "eval.jsonl")
            before_final = sorted(evals, key=lambda r: r.get("step", 0))[:-1][-last:]
            values = [_score(r, "normalized_score", "return_mean")[0] for r in before_final]
            values = [v for v in values if v is not None]
            criteria.append(sum(values) / len(values) if values else None)
            metrics.update(_score(r, "normalized_score", "return_mean")[1] for r in before_final)
        if any(value is None for value in criteria):
            why = "no evaluation before the final one (expected train.eval_every below train.steps)"
    metrics.discard("none")
    return {
        "metric": "normalized score" if metrics == {"normalized score"} else ("return" if metrics == {"return"} else "mixed"),
        "criterion": None if why else _mean(criteria),
        "criterion_per_seed": dict(zip(seeds, criteria)),
        "test_final_mean": _mean(finals),
        "test_final_std": _std(finals),
        "test_final_per_seed": dict(zip(seeds, finals)),
        "ineligible": why,
    }


def _eval_records(path: Path) -> list[dict[str, Any]]:
    import json

    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _mean(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _std(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.pstdev(values) if values else None


def select_best(sweep_dir: str | Path) -> dict[str, Any]:
    """The best configuration per (algorithm, dataset) of a sweep directory, with every candidate."""
    index = SweepIndex.read(sweep_dir)
    spec_hash = index.spec_hash
    selection = index.data["spec"]["selection"]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for trial_id, entry in index.trials.items():
        trial = entry["definition"]
        directory = trial_dir(index.path, trial_id)
        state, record = trial_state(directory, spec_hash)
        candidate = {"trial": trial_id, "hyperparameters": trial["hyperparameters"], "status": state,
                     "run_dir": str(Path("trials") / trial_id)}
        if state == "finished":
            candidate.update(trial_scores(directory, trial, record))
            if candidate["criterion"] is None or not math.isfinite(candidate["criterion"]):
                candidate["ineligible"] = candidate["ineligible"] or "criterion is not a finite number"
        else:
            candidate["ineligible"] = f"trial {state}" + (f": {record['error']}" if record.get("error") else "")
        groups.setdefault((trial["algorithm"], trial["dataset_label"]), []).append(candidate)
    result = []
    for (algorithm, dataset), candidates in groups.items():
        eligible = [c for c in candidates if not c.get("ineligible")]
        # Highest criterion wins; ties go to the trial listed first in the spec's expansion.
        best = max(eligible, key=lambda c: c["criterion"]) if eligible else None
        result.append({"algorithm": algorithm, "dataset": dataset, "best": best, "candidates": candidates,
                       "metric": best["metric"] if best else None})
    explained = CRITERIA_EXPLAINED[selection["criterion"]].format(**selection)
    return {"criterion": selection, "criterion_explained": explained,
            "note": "the test score (final evaluation) is reported beside the choice, never used to make it",
            "groups": result}


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def format_selection(selection: dict[str, Any]) -> str:
    lines = [f"selection criterion: {selection['criterion_explained']}"]
    for group in selection["groups"]:
        best = group["best"]
        head = f"{group['algorithm']} on {group['dataset']}: "
        if best is None:
            reasons = "; ".join(f"{c['trial']}: {c['ineligible']}" for c in group["candidates"])
            lines.append(head + f"no eligible configuration ({reasons})")
            continue
        params = ", ".join(f"{k}={v}" for k, v in best["hyperparameters"].items()) or "defaults"
        lines.append(head + f"{params} [{best['trial']}] criterion {best['criterion']:.2f} ({best['metric']}); "
                            f"its final (test) score {_number(best['test_final_mean'])} ± {_number(best['test_final_std'])} "
                            f"over {len(best['test_final_per_seed'])} seeds "
                            f"({len(group['candidates'])} configurations, "
                            f"{sum(1 for c in group['candidates'] if not c.get('ineligible'))} eligible)")
    return "\n".join(lines)
