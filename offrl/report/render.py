"""The report: computed once as a list of blocks, written as Markdown and as self-contained HTML.

The HTML embeds its figures as base64 PNG `data:` URIs and has no external references, so it
opens offline; the PNGs are also written beside report.md, which links them.
"""

from __future__ import annotations

import base64
import html
import time
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Sequence

import numpy as np

from offrl.errors import ConfigError
from offrl.report import stats
from offrl.report.bandit import ucb_selection_curve
from offrl.report.bands import DEFAULT_BANDS, band_section, load_bands, reduced_budget_note
from offrl.report.compare import SIGNIFICANCE, format_p
from offrl.report.results import NORMALIZED, Results, collect_runs
from offrl.version import __version__

FORMATS = ("md", "html")
CONFIDENCE = 0.95


# ---------------------------------------------------------------------------- blocks
@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Paragraph:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Figure:
    file_name: str
    caption: str
    png: bytes


@dataclass
class Report:
    title: str
    blocks: list = field(default_factory=list)

    @property
    def figures(self) -> list[Figure]:
        return [block for block in self.blocks if isinstance(block, Figure)]


# ------------------------------------------------------------------------ formatting
def _mean_std(values: np.ndarray, count: str) -> str:
    """'mean ± sample std (n of N; ...)'; the std needs two seeds."""
    if values.size == 0:
        return f"– ({count})"
    spread = f"{np.std(values, ddof=1):.1f}" if values.size > 1 else "–"
    return f"{np.mean(values):.1f} ± {spread} ({count})"


def _ci(interval: stats.Interval, digits: int = 1) -> str:
    return interval.format(digits)


def _seed_cell(seed) -> str:
    return "?" if seed is None else str(seed)


def _seeds(seeds: Sequence) -> str:
    known = sorted(s for s in seeds if s is not None)
    text = ", ".join(map(str, known))
    return text + (", ?" * (len(seeds) - len(known)))


def _budget(steps: set) -> str:
    known = sorted(s for s in steps if s is not None)
    if not known:
        return "unknown"
    return f"{known[0]:,}" if len(known) == 1 else f"{known[0]:,}–{known[-1]:,}"


# ------------------------------------------------------------------------ the report
def build_report(results: Results, reps: int = 2000, seed: int = 0, bands: str | None = DEFAULT_BANDS,
                 band_tolerance: float = 0.0) -> Report:
    """Every table and figure of the report for `results` (finished runs required), with the
    published band table `bands` beside D4RL cells ('none' or None: without)."""
    from offrl.report import plots

    results.require_runs()
    if reps < 1:
        raise ConfigError(f"--bootstrap is {reps}; expected a positive number of bootstrap replicates.")
    rng = np.random.default_rng(seed)
    labels, datasets = results.labels, results.datasets
    colors = plots.colors_for(labels)
    report = Report(title=f"offrl report: {results.root}")
    add = report.blocks.append

    add(Paragraph(f"Generated {time.strftime('%Y-%m-%d %H:%M')} by offrl {__version__} from the run "
                  f"directories under {results.root}. Intervals are {CONFIDENCE:.0%} percentile intervals of "
                  f"{reps} stratified-bootstrap replicates (seed {seed}); IQM is the interquartile mean "
                  "(Agarwal et al. 2021, the rliable protocol)."))

    # 1. what was found
    add(Heading(2, "What was found"))
    all_steps = {run.steps for run in results.runs}
    missing, diverged, unplaced = results.missing_seeds, results.diverged, results.unplaced
    found = [
        f"{_count(len(results.runs), 'counted run', 'counted runs')} of "
        f"{_count(len(labels), 'algorithm configuration', 'algorithm configurations')} ({', '.join(labels)}) "
        f"on {_count(len(datasets), 'dataset', 'datasets')} ({', '.join(datasets)}).",
        (f"{_count(len(diverged), 'seed', 'seeds')} diverged and {'counts' if len(diverged) == 1 else 'count'} "
         "at its last valid evaluation before it diverged (listed below)." if diverged else "No seed diverged."),
        (f"{_count(len(missing), 'seed is', 'seeds are')} missing and not counted (listed below with the reason)."
         if missing else "No seed is missing."),
        f"Training budget: {_budget(all_steps)} gradient updates per run"
        + ("." if len(all_steps) == 1 else " (it differs between runs; see the table)."),
    ]
    if unplaced:
        found.insert(3, f"{_count(len(unplaced), 'other run directory', 'other run directories')} not counted "
                        "(unreadable, or not offline training runs; listed below).")
    for dataset in datasets:
        found.append(f"'{dataset}' is scored by {results.score_kind(dataset)}.")
    add(Bullets(found + results.notes))
    rows, thin = [], []
    for dataset in results.table_datasets:
        for label in results.table_labels:
            cell = results.cell(label, dataset)
            if not cell and not results.missing(label, dataset):
                continue
            speeds = [r.updates_per_second for r in cell if r.updates_per_second]
            seeds = _seeds([r.seed for r in cell]) or "–"
            rows.append([dataset, label, f"{len(cell)} of {results.expected(label, dataset)}", seeds,
                         _budget({r.steps for r in cell}), f"{np.median(speeds):,.0f}" if speeds else "–"])
            if len(cell) < 3:
                thin.append(f"{label} on '{dataset}'")
    add(Table(["dataset", "algorithm", "seeds counted", "counted seeds", "updates per run", "median updates/s"], rows))
    if thin:
        add(Paragraph(f"Fewer than 3 seeds counted (intervals from so few runs are unreliable): {'; '.join(sorted(thin))}."))
    if diverged:
        add(Heading(3, "Diverged seeds (counted at their last valid evaluation)"))
        add(Table(["dataset", "algorithm", "seed", "diverged at step", "counted evaluation at step", "run directory"],
                  [[r.dataset, r.label, _seed_cell(r.seed), str(r.diverged_at), str(r.final_step),
                    _relative(r.path, results.root)] for r in diverged]))
    if missing:
        add(Heading(3, "Missing seeds"))
        add(Paragraph("Seeds that were asked for or found but are not counted in any mean, and why."))
        add(Table(["dataset", "algorithm", "seed", "run directory", "reason"],
                  [[s.dataset, s.label, _seed_cell(s.seed), _relative(s.path, results.root), s.reason] for s in missing]))
    if unplaced:
        add(Heading(3, "Other run directories not counted"))
        add(Table(["run directory", "reason"], [[_relative(s.path, results.root), s.reason] for s in unplaced]))

    # 2. D4RL-style tables (their titles say when the budget was reduced)
    reduced = reduced_budget_note(results)
    table_labels = results.table_labels
    for which, title, explanation in (
        ("final", "Final score", "the score at the last evaluation of each run (what a deployed agent gets)"),
        ("best", "Best score (optimistic)",
         "the maximum over all evaluations during training, selected on the same evaluation episodes it is "
         "measured on, so it is biased upwards; do not compare it with others' final scores"),
    ):
        add(Heading(2, f"{title} — {reduced}" if reduced else title))
        add(Paragraph(f"{explanation[0].upper()}{explanation[1:]}. Cells: mean ± sample standard deviation over the "
                      "counted seeds (n of N seeds: N counts every seed asked for or found; a diverged seed counts at "
                      "its last valid evaluation and is named; missing seeds are listed under 'Missing seeds'). Rows "
                      "are datasets, scored by normalised score (100 × (return − random) / (expert − random)) unless "
                      "marked (return)."))
        rows = []
        for dataset in results.table_datasets:
            marker = " (return)" if dataset in datasets and results.score_kind(dataset) != NORMALIZED else ""
            rows.append([dataset + marker] + [
                _mean_std(results.scores(label, dataset, which), results.count_text(label, dataset, which))
                if results.expected(label, dataset) else "–" for label in table_labels])
        add(Table(["dataset"] + table_labels, rows))
    add_safe_table(results, add)
    if bands is not None and bands.lower() != "none":
        kinds = {"heading": lambda text: Heading(2, text), "subheading": lambda text: Heading(3, text),
                 "paragraph": Paragraph, "table": lambda content: Table(*content)}
        for kind, content in band_section(results, load_bands(bands), band_tolerance):
            add(kinds[kind](content))

    # 3. aggregates over tasks
    add(Heading(2, "Aggregate over tasks"))
    normalized = [d for d in datasets if results.score_kind(d) == NORMALIZED]
    aggregate_datasets, score_name = (normalized, "normalised score") if normalized else (datasets, "return")
    if not normalized:
        add(Paragraph("No dataset has reference scores, so the aggregates below pool raw returns; across "
                      "datasets of different return scales they mean little."))
    elif len(normalized) < len(datasets):
        add(Paragraph(f"Aggregates use the {_count(len(normalized), 'dataset', 'datasets')} with normalised scores "
                      "and leave out those scored by return only: "
                      f"{', '.join(d for d in datasets if d not in normalized)}."))
    aggregate_rows, rows = [], []
    task_sets = set()
    for label in labels:
        tasks = [results.scores(label, d) for d in aggregate_datasets if results.cell(label, d)]
        if not tasks:
            continue
        task_sets.add(tuple(d for d in aggregate_datasets if results.cell(label, d)))
        intervals = {name: stats.aggregate_interval(tasks, name, reps, rng, CONFIDENCE) for name in stats.AGGREGATES}
        aggregate_rows.append((label, intervals))
        single = all(t.size == 1 for t in tasks)  # the bootstrap cannot vary a single run per task
        rows.append([label, str(len(tasks)), str(sum(t.size for t in tasks))]
                    + [f"{intervals[name].point:.1f} (one run per task: no interval)" if single else _ci(intervals[name])
                       for name in ("IQM", "Mean")])
    add(Paragraph(f"Final {score_name} of all runs pooled over tasks: interquartile mean (the mean of the middle "
                  f"50% of runs) and mean, each with its {CONFIDENCE:.0%} stratified-bootstrap confidence interval "
                  "[low, high] (runs resampled within each task)."))
    add(Table(["algorithm", "tasks", "runs", f"IQM [{CONFIDENCE:.0%} CI]", f"mean [{CONFIDENCE:.0%} CI]"], rows))
    if len(task_sets) > 1:
        add(Paragraph("The algorithms were not all run on the same datasets, so their aggregates cover different "
                      "tasks and are not directly comparable; the probability of improvement below uses only "
                      "the datasets each pair shares."))

    # 4. probability of improvement
    add(Heading(2, "Probability of improvement"))
    pairs = []
    if len(labels) < 2:
        add(Paragraph("Only one algorithm configuration was found, so there is no pair to compare."))
    else:
        add(Paragraph("P(X > Y): the probability that a run of X has a higher final score than a run of Y on the "
                      "same dataset (Mann-Whitney U statistic / (n_X n_Y), ties counted ½), averaged over the "
                      "datasets both were run on. It compares ranks within a dataset, so datasets scored by return "
                      "count too. 0.5 means no difference. 'Permutation p' is a stratified permutation test of "
                      "P(X > Y) = 0.5 (runs shuffled between X and Y within each dataset), which stays honest with "
                      "few seeds where the bootstrap CI does not; a pair reads 'better' only when the CI excludes "
                      f"0.5 and p < {SIGNIFICANCE}."))
        rows = []
        for x, y in combinations(labels, 2):
            shared = [d for d in datasets if results.cell(x, d) and results.cell(y, d)]
            if not shared:
                rows.append([x, y, "0", "–", "–", "no dataset in common"])
                continue
            x_tasks, y_tasks = [results.scores(x, d) for d in shared], [results.scores(y, d) for d in shared]
            interval = stats.probability_of_improvement_interval(x_tasks, y_tasks, reps, rng, CONFIDENCE)
            p_value = stats.improvement_permutation_p_value(x_tasks, y_tasks, reps, rng)
            pairs.append((x, y, interval, p_value < SIGNIFICANCE))
            rows.append([x, y, str(len(shared)), _ci(interval, 2), format_p(p_value), _verdict(x, y, interval, p_value)])
        add(Table(["X", "Y", "shared datasets", f"P(X > Y) [{CONFIDENCE:.0%} CI]", "permutation p", "reading"], rows))

    # 5. figures
    add(Heading(2, "Figures"))
    if aggregate_rows:
        add(Figure("aggregate.png", f"IQM and mean of the final {score_name} over tasks with {CONFIDENCE:.0%} "
                   "stratified-bootstrap confidence intervals.",
                   plots.png_bytes(plots.aggregate_figure(aggregate_rows, colors, score_name, CONFIDENCE))))
        profiles = {}
        everything = np.concatenate([results.scores(label, d) for label in labels for d in aggregate_datasets
                                     if results.cell(label, d)])
        low, high = float(everything.min()), float(everything.max())
        margin = 0.05 * max(high - low, 1.0)
        taus = np.linspace(low - margin, high + margin, 201)
        for label, _ in aggregate_rows:
            tasks = [results.scores(label, d) for d in aggregate_datasets if results.cell(label, d)]
            profiles[label] = stats.performance_profile_band(tasks, taus, reps, rng, CONFIDENCE)
        add(Figure("performance_profile.png", f"Performance profiles: the fraction of runs whose final {score_name} "
                   f"exceeds τ, pooled over tasks, with pointwise {CONFIDENCE:.0%} stratified-bootstrap bands. "
                   "A curve above another everywhere is better at every threshold.",
                   plots.png_bytes(plots.profile_figure(taus, profiles, colors, score_name, CONFIDENCE))))
    panels = _curve_panels(results, reps, rng)
    band_name = f"{CONFIDENCE:.0%} bootstrap CI of the mean over seeds (none with one seed)"
    if panels:
        add(Figure("learning_curves.png", f"Learning curves per dataset: evaluation score against gradient updates, "
                   f"mean over seeds; shaded: {band_name}.",
                   plots.png_bytes(plots.curves_figure(panels, colors, band_name))))
    if pairs:
        add(Figure("probability_of_improvement.png", "Probability of improvement P(X > Y) for each pair, with "
                   f"{CONFIDENCE:.0%} stratified-bootstrap confidence intervals; the dashed line is 0.5 (no difference).",
                   plots.png_bytes(plots.improvement_figure(pairs, CONFIDENCE))))
    for block in bandit_blocks(results, labels, datasets):  # Unifloral's UCB protocol (offrl/report/bandit.py)
        add(block)
    if reduced:  # every table's title says the budget was reduced
        for block in report.blocks:
            if isinstance(block, Heading) and block.text != "What was found" and reduced not in block.text:
                block.text = f"{block.text} — {reduced}"
    return report


def _spread(values: np.ndarray) -> str:
    return f" ± {np.std(values, ddof=1):.2f}" if values.size > 1 else ""


def add_safe_table(results: Results, add) -> None:
    """Constrained tasks: DSRL's table of normalised reward and normalised cost per cell, marked
    safe when the mean normalised cost is at most 1 (Liu et al. 2023, the OSRL/DSRL protocol)."""
    cells = {(label, dataset): [run.safe for run in results.cell(label, dataset) if run.safe]
             for dataset in results.table_datasets for label in results.table_labels}
    if not any(cells.values()):
        return
    add(Heading(2, "Reward and cost (safe RL)"))
    add(Paragraph("Runs on a task with costs, scored as DSRL does: normalised reward (R − R_min) / (R_max − R_min) "
                  "and normalised cost (C + ε) / (κ + ε) at the run's target cost κ, each mean ± sample standard "
                  "deviation over the seeds with cost numbers. A cell is 'safe' when its mean normalised cost is at "
                  "most 1, else 'unsafe'; compare rewards only among safe cells."))
    rows = []
    for dataset in results.table_datasets:
        row = [dataset]
        for label in results.table_labels:
            numbers = cells[(label, dataset)]
            if not numbers:
                row.append("–")
                continue
            costs = np.array([n["final_normalized_cost"] for n in numbers])
            rewards = np.array([n["final_normalized_reward"] for n in numbers if "final_normalized_reward" in n])
            targets = sorted({n["target_cost"] for n in numbers if "target_cost" in n})
            reward = f"reward {np.mean(rewards):.2f}{_spread(rewards)}, " if rewards.size else ""
            verdict = "safe" if np.mean(costs) <= 1.0 else "unsafe"
            row.append(f"{reward}cost {np.mean(costs):.2f}{_spread(costs)}: {verdict} "
                       f"(κ {', '.join(f'{t:g}' for t in targets) or '?'}; {len(numbers)} seeds)")
        rows.append(row)
    add(Table(["dataset"] + results.table_labels, rows))


BANDIT_PULLS = (1, 2, 5, 10, 20, 50, 100)


def bandit_blocks(results: Results, labels: list[str], datasets: list[str]) -> list:
    """'Choosing a seed with a small online budget': per cell of two or more seeds, the expected final
    return of the seed a UCB bandit picks after k evaluation episodes (Jackson et al. 2025)."""
    rows = []
    for dataset in datasets:
        for label in labels:
            returns = [run.curve[-1]["returns"] for run in results.cell(label, dataset)
                       if run.curve and run.curve[-1].get("returns")]
            if len(returns) < 2:
                continue
            curve = ucb_selection_curve(returns, max_pulls=max(BANDIT_PULLS))
            rows.append([dataset, label, str(curve.policies)] + [f"{curve.mean[k - 1]:.1f} [{curve.low[k - 1]:.1f}, {curve.high[k - 1]:.1f}]"
                                                               for k in BANDIT_PULLS])
    if not rows:
        return []
    return [Heading(2, "Choosing a seed with a small online budget"),
            Paragraph("Unifloral's protocol (Jackson et al. 2025): a UCB bandit (α = 2) spends k online episodes on 5 "
                      "seeds drawn at random from a cell (its final evaluation episodes are the draws) and picks the "
                      "seed with the best empirical mean; each entry is the expected true mean final return of the "
                      "pick over 500 repeats, with a 95% bootstrap interval."),
            Table(["dataset", "configuration", "seeds"] + [f"k = {k}" for k in BANDIT_PULLS], rows)]


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


def _verdict(x: str, y: str, interval: stats.Interval, p_value: float) -> str:
    """The short form of compare's reading: better only if the CI excludes 0.5 and p < 0.05."""
    if interval.low > 0.5 or interval.high < 0.5:
        winner = x if interval.low > 0.5 else y
        return f"{winner} better" if p_value < SIGNIFICANCE else f"{winner} looks better (not significant)"
    return "no clear difference"


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root)) or "."
    except ValueError:
        return str(path)


def _curve_panels(results: Results, reps: int, rng: np.random.Generator) -> list:
    """Per dataset: for each algorithm, the mean over seeds at each evaluation step and the
    bootstrap interval of that mean (NaN where fewer than two seeds were evaluated)."""
    panels = []
    for dataset in results.datasets:
        kind = results.score_kind(dataset)
        curves = {}
        for label in results.labels:
            by_step: dict[int, list[float]] = {}
            for run in results.cell(label, dataset):
                for step, value in zip(*run.curve_points(kind)):
                    by_step.setdefault(int(step), []).append(float(value))
            if not by_step:
                continue
            steps = np.array(sorted(by_step))
            means, lows, highs = [], [], []
            for step in steps:
                values = np.array(by_step[step])
                means.append(values.mean())
                if values.size > 1:
                    interval = stats.aggregate_interval([values], "Mean", reps, rng, CONFIDENCE)
                    lows.append(interval.low)
                    highs.append(interval.high)
                else:
                    lows.append(np.nan)
                    highs.append(np.nan)
            curves[label] = (steps, np.array(means), np.array(lows), np.array(highs))
        if curves:
            panels.append((dataset, "normalised score" if kind == NORMALIZED else "return", curves))
    return panels


# ------------------------------------------------------------------------- Markdown
def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(report: Report) -> str:
    lines = [f"# {report.title}", ""]
    for block in report.blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            lines += [block.text, ""]
        elif isinstance(block, Bullets):
            lines += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Table):
            lines.append("| " + " | ".join(map(_md_cell, block.header)) + " |")
            lines.append("|" + "|".join(["---"] * len(block.header)) + "|")
            lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in block.rows]
            lines.append("")
        elif isinstance(block, Figure):
            lines += [f"![{Path(block.file_name).stem}]({block.file_name})", "", f"*{block.caption}*", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- HTML
_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 70rem; margin: 2rem auto;
       padding: 0 1rem; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.8rem 0 1.2rem; font-size: 0.92rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: left; }
th { background: #f3f3f3; }
td { font-variant-numeric: tabular-nums; }
figure { margin: 1.2rem 0 2rem; }
figure img { max-width: 100%; height: auto; }
figcaption { font-size: 0.9rem; color: #444; }
h1 { font-size: 1.5rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
"""


def to_html(report: Report) -> str:
    escape = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{escape(report.title)}</title>", f"<style>{_STYLE}</style>", "</head>", "<body>",
             f"<h1>{escape(report.title)}</h1>"]
    for block in report.blocks:
        if isinstance(block, Heading):
            parts.append(f"<h{block.level}>{escape(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{escape(block.text)}</p>")
        elif isinstance(block, Bullets):
            parts.append("<ul>" + "".join(f"<li>{escape(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{escape(cell)}</th>" for cell in block.header)
            body = "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in block.rows)
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(block, Figure):
            data = base64.b64encode(block.png).decode("ascii")
            parts.append(f'<figure><img alt="{escape(block.caption)}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{escape(block.caption)}</figcaption></figure>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


# ---------------------------------------------------------------------------- writing
def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    names = [part.strip().lower() for part in (text.split(",") if isinstance(text, str) else text)]
    names = [name for name in names if name]
    unknown = [name for name in names if name not in FORMATS]
    if unknown or not names:
        raise ConfigError(f"--format is {','.join(names) or 'empty'}; expected a comma-separated list of {', '.join(FORMATS)}.")
    return tuple(dict.fromkeys(names))


def write_report(results_dir: str | Path, out: str | Path | None = None, formats: str | Sequence[str] = FORMATS,
                 reps: int = 2000, seed: int = 0, bands: str | None = DEFAULT_BANDS, band_tolerance: float = 0.0) -> list[Path]:
    """Write report.md / report.html (and the figures' PNGs) for the runs under `results_dir`
    into `out` (default: `results_dir`); returns the report files written."""
    formats = parse_formats(formats)
    results = collect_runs(results_dir)
    report = build_report(results, reps=reps, seed=seed, bands=bands, band_tolerance=band_tolerance)
    out = Path(out) if out is not None else Path(results_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"Cannot create the output directory '{out}' ({error.strerror}); expected a writable path.") from None
    written = []
    if "md" in formats:
        for figure in report.figures:
            (out / figure.file_name).write_bytes(figure.png)
        (out / "report.md").write_text(to_markdown(report))
        written.append(out / "report.md")
    if "html" in formats:
        (out / "report.html").write_text(to_html(report))
        written.append(out / "report.html")
    return written
