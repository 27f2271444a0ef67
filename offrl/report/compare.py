"""`offrl compare RUN_A RUN_B`: which of two sets of runs is better, and how sure we can be.

Each side is a run directory, a multi-seed directory (seed_*/ runs) or any results directory
holding runs of one algorithm configuration. The two are compared on the datasets they share,
by final score: difference of means with a stratified-bootstrap interval, probability of
improvement P(A > B) with its interval, and a stratified permutation test of P(A > B) = 0.5,
which stays honest where the bootstrap does not (two or three seeds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from offrl.errors import ConfigError
from offrl.report import stats
from offrl.report.results import NORMALIZED, RETURN, Results, Run, collect_runs, count_text, seed_name

MIN_SEEDS = 3  # below this, bootstrap intervals from so few runs are not to be trusted
SIGNIFICANCE = 0.05  # two-sided level of the permutation test behind "is better"


@dataclass
class Side:
    path: Path
    results: Results

    @property
    def label(self) -> str:
        return self.results.labels[0]

    def summary(self) -> str:
        """'td3bc, 2 of 3 seeds counted, 1 diverged (counted at its last valid evaluation), 1 missing'."""
        runs, missing = self.results.runs, self.results.missing_seeds
        text = f"{self.label}, {len(runs)} of {len(runs) + len(missing)} seed{'s' if len(runs) + len(missing) != 1 else ''} counted"
        diverged = [run for run in runs if run.diverged]
        if diverged:
            text += f", {len(diverged)} diverged (counted at {'its' if len(diverged) == 1 else 'their'} last valid evaluation)"
        if missing:
            text += f", {len(missing)} missing (not counted)"
        return text


@dataclass
class Comparison:
    a: Side
    b: Side
    datasets: list[str]
    kinds: list[str]  # score kind used on each shared dataset
    a_scores: list[np.ndarray]
    b_scores: list[np.ndarray]
    a_seeds: list[list]
    b_seeds: list[list]
    a_runs: list[list[Run]]
    b_runs: list[list[Run]]
    difference: stats.Interval  # mean(A) - mean(B), runs pooled over the shared datasets
    improvement: stats.Interval  # P(A > B)
    p_value: float
    verdict: str
    warnings: list[str] = field(default_factory=list)


def format_p(p_value: float) -> str:
    return "< 0.001" if p_value < 0.001 else f"{p_value:.3f}"


def p_phrase(p_value: float) -> str:
    """'p < 0.001' or 'p = 0.042'."""
    return "p < 0.001" if p_value < 0.001 else f"p = {p_value:.3f}"


def improvement_reading(x: str, y: str, interval: stats.Interval, p_value: float) -> str:
    """"X is better" only when the interval excludes 0.5 and the permutation test agrees."""
    detail = f"P({x} > {y}) = {interval.point:.2f}, 95% CI [{interval.low:.2f}, {interval.high:.2f}], permutation {p_phrase(p_value)}"
    if interval.low > 0.5 or interval.high < 0.5:
        winner = x if interval.low > 0.5 else y
        if p_value < SIGNIFICANCE:
            return f"{winner} is better ({detail})"
        return (f"{winner} looks better but it is not significant ({detail}): too few runs to be sure; "
                "run more seeds")
    return f"no clear difference ({detail})"


def _side(path: str | Path, name: str) -> Side:
    results = collect_runs(path)
    results.require_runs()
    if len(results.labels) > 1:
        raise ConfigError(
            f"{name} '{path}' holds runs of {len(results.labels)} algorithm configurations "
            f"({'; '.join(results.labels)}); expected one configuration per side (point at its own directory)."
        )
    return Side(Path(path), results)


def compare_runs(path_a: str | Path, path_b: str | Path, reps: int = 2000, seed: int = 0) -> Comparison:
    a, b = _side(path_a, "RUN_A"), _side(path_b, "RUN_B")
    shared = [d for d in a.results.datasets if d in b.results.datasets]
    if not shared:
        raise ConfigError(
            f"RUN_A '{path_a}' has runs on {', '.join(a.results.datasets)} and RUN_B '{path_b}' on "
            f"{', '.join(b.results.datasets)}; expected at least one dataset in common."
        )
    kinds = [NORMALIZED if a.results.score_kind(d) == b.results.score_kind(d) == NORMALIZED else RETURN for d in shared]
    a_runs = [a.results.cell(a.label, d) for d in shared]
    b_runs = [b.results.cell(b.label, d) for d in shared]
    a_scores = [np.array([r.score(kind) for r in runs]) for runs, kind in zip(a_runs, kinds)]
    b_scores = [np.array([r.score(kind) for r in runs]) for runs, kind in zip(b_runs, kinds)]
    rng = np.random.default_rng(seed)
    difference = stats.difference_interval(a_scores, b_scores, "Mean", reps, rng)
    improvement = stats.probability_of_improvement_interval(a_scores, b_scores, reps, rng)
    p_value = stats.improvement_permutation_p_value(a_scores, b_scores, reps, rng)
    verdict = improvement_reading("A", "B", improvement, p_value)
    verdict += f"; mean difference A − B = {difference.point:.1f}, 95% CI [{difference.low:.1f}, {difference.high:.1f}]"

    warnings = []
    for name, side, scores in (("A", a, a_scores), ("B", b, b_scores)):
        for dataset, values in zip(shared, scores):
            if values.size < MIN_SEEDS:
                warnings.append(f"{name} has {values.size} seed{'s' if values.size != 1 else ''} on '{dataset}'; with "
                                f"fewer than {MIN_SEEDS} the intervals are not to be trusted.")
        left_out = [d for d in side.results.datasets if d not in shared]
        if left_out:
            warnings.append(f"{name}'s runs on {', '.join(left_out)} are left out (no counterpart in the other).")
    if len(set(kinds)) > 1:
        warnings.append("Some datasets are scored by return and others by normalised score; the mean difference "
                        "mixes the two scales (P(A > B) does not: it compares ranks within each dataset).")
    for name, side in (("A", a), ("B", b)):
        for item in side.results.skipped:
            if not (item.placed and item.label == side.label and item.dataset in shared):  # those are listed per dataset
                where = f" on '{item.dataset}'" if item.dataset else ""
                warnings.append(f"{name}: {item.path} is not counted{where}: {item.reason}.")
    return Comparison(a, b, shared, kinds, a_scores, b_scores,
                      [[r.seed for r in runs] for runs in a_runs], [[r.seed for r in runs] for runs in b_runs],
                      a_runs, b_runs, difference, improvement, p_value, verdict, warnings)


def _score(run: Run, value: float) -> str:
    text = f"{seed_name(run.seed)}: {value:.1f}"
    if run.diverged:
        text += f" (diverged at step {run.diverged_at}; its last evaluation, step {run.final_step})"
    return text


def format_comparison(comparison: Comparison) -> str:
    lines = []
    for name, side in (("A", comparison.a), ("B", comparison.b)):
        lines.append(f"{name}: {side.path}  ({side.summary()})")
    for index, (dataset, kind) in enumerate(zip(comparison.datasets, comparison.kinds)):
        lines.append("")
        lines.append(f"{dataset}: final {kind} per seed")
        for name, side, scores, runs in (("A", comparison.a, comparison.a_scores, comparison.a_runs),
                                         ("B", comparison.b, comparison.b_scores, comparison.b_runs)):
            values, cell = scores[index], runs[index]
            missing = side.results.missing(side.label, dataset)
            per_seed = ", ".join(_score(run, value) for run, value in zip(cell, values))
            spread = f" ± {np.std(values, ddof=1):.1f}" if values.size > 1 else ""
            lines.append(f"  {name}  mean {values.mean():.1f}{spread} ({count_text(cell, missing)})   {per_seed}")
            lines += [f"     {name} missing {seed_name(item.seed)} ({item.path}): {item.reason}" for item in missing]
    lines.append("")
    d, p = comparison.difference, comparison.improvement
    lines.append(f"difference of means A − B: {d.point:.1f}  95% CI [{d.low:.1f}, {d.high:.1f}] (stratified bootstrap)")
    lines.append(f"probability of improvement P(A > B): {p.point:.2f}  95% CI [{p.low:.2f}, {p.high:.2f}]; "
                 f"permutation test of P(A > B) = 0.5: {p_phrase(comparison.p_value)}")
    lines.append(f"verdict: {comparison.verdict}")
    lines += [f"warning: {warning}" for warning in comparison.warnings]
    return "\n".join(lines)
