"""Published score bands: a reference's results beside offrl's cells, with a verdict per cell.

A band file (offrl/report/published/<name>.json, e.g. `corl-gym`: CORL's D4RL Gym-MuJoCo table)
holds, per algorithm and D4RL dataset, the published final and best normalised scores as
[mean, std] over its seeds, and the budget each algorithm was trained for. A cell of ours is
"reproduced" when its mean lies within the band mean ± max(2 std, tolerance), "below" or "above"
otherwise; "no reference" when the file has no entry; and it gets no verdict when its runs were
trained for fewer updates than the reference's budget (a reduced budget answers a different
question), which the table says.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from offrl.data.public_names import parse_public_name
from offrl.errors import ConfigError

PUBLISHED_DIR = Path(__file__).parent / "published"
DEFAULT_BANDS = "corl-gym"
REPRODUCED, BELOW, ABOVE, NO_REFERENCE, REDUCED = "reproduced", "below", "above", "no reference", "no verdict"


@dataclass(frozen=True)
class BandTable:
    name: str
    about: str
    source: str
    seeds: int
    budgets: dict[str, int]
    scores: dict[str, dict[str, dict[str, tuple[float, float]]]]  # which -> algorithm -> dataset -> (mean, std)

    def entry(self, which: str, algorithm: str, dataset_key: str) -> tuple[float, float] | None:
        return self.scores.get(which, {}).get(algorithm, {}).get(dataset_key)

    def budget(self, algorithm: str) -> int:
        return int(self.budgets.get(algorithm, self.budgets.get("default", 0)))


def available() -> list[str]:
    return sorted(path.stem.replace("_", "-") for path in PUBLISHED_DIR.glob("*.json"))


def load_bands(name_or_path: str = DEFAULT_BANDS) -> BandTable:
    """A shipped band table by name (`corl-gym`) or a JSON file of the same layout."""
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        path = PUBLISHED_DIR / f"{name_or_path.replace('-', '_')}.json"
    if not path.is_file():
        raise ConfigError(f"--bands {name_or_path!r} is neither a shipped band table nor a file; expected one of: "
                          f"{', '.join(available())}, 'none' or a JSON file.")
    try:
        raw = json.loads(path.read_text())
        scores = {which: {algorithm: {dataset: (float(pair[0]), float(pair[1])) for dataset, pair in rows.items()}
                          for algorithm, rows in raw[which].items()} for which in ("final", "best")}
        return BandTable(name=str(raw.get("name", path.stem)), about=str(raw.get("about", "")), source=str(raw["source"]),
                         seeds=int(raw.get("seeds", 0)), budgets={k: int(v) for k, v in raw.get("budgets", {}).items()},
                         scores=scores)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        raise ConfigError(f"Band table '{path}' is not readable; expected JSON with 'source', 'budgets' and 'final'/"
                          "'best' mapping algorithm -> D4RL dataset -> [mean, std].") from None


def dataset_key(name: str | None) -> str | None:
    """The D4RL dataset a run's dataset name is (`d4rl/hopper-medium-v2` -> `hopper-medium-v2`)."""
    public = parse_public_name(name or "")
    return public.preset_key if public is not None and public.kind == "d4rl" else None


def verdict(mean: float, band: tuple[float, float] | None, tolerance: float = 0.0) -> str:
    if band is None:
        return NO_REFERENCE
    published, std = band
    half_width = max(2.0 * std, tolerance)
    if mean < published - half_width:
        return BELOW
    if mean > published + half_width:
        return ABOVE
    return REPRODUCED


def budget_scale_of(run_path: Path) -> float | None:
    """The budget scale `offrl reproduce` recorded in the run's config.json, if any."""
    try:
        reference = json.loads((run_path / "config.json").read_text()).get("dataset") or {}
    except (OSError, ValueError):
        return None
    scale = reference.get("budget_scale") if isinstance(reference, dict) else None
    return float(scale) if isinstance(scale, (int, float)) else None


def reduced_budget_note(results) -> str | None:
    """'reduced budget (x0.1 of the reference's)' when any counted run was trained at a reduced scale."""
    scales = {scale for run in results.runs if (scale := budget_scale_of(run.path)) is not None and scale < 1}
    if not scales:
        return None
    shown = ", ".join(f"×{scale:g}" for scale in sorted(scales))
    return f"reduced budget ({shown} of the reference's updates; no band verdicts)"


def band_rows(results, table: BandTable, which: str, tolerance: float = 0.0) -> list[list[str]]:
    """One row per (dataset, algorithm) cell: ours, published, band, verdict."""
    rows = []
    for dataset in results.table_datasets:
        for label in results.table_labels:
            cell = results.cell(label, dataset)
            if not cell:
                continue
            algorithm = cell[0].algorithm
            key = dataset_key(cell[0].dataset_argument) or dataset_key(dataset)
            scores = np.array([run.score("normalised score", which) for run in cell if run.normalized], dtype=float)
            scores = scores[np.isfinite(scores)]
            if scores.size == 0:
                continue
            ours = f"{scores.mean():.1f} ± {scores.std(ddof=1) if scores.size > 1 else 0.0:.1f} (n={scores.size})"
            band = table.entry(which, algorithm, key) if key else None
            if band is None:
                rows.append([dataset, label, ours, "–", "–", NO_REFERENCE])
                continue
            half_width = max(2.0 * band[1], tolerance)
            published = f"{band[0]:.1f} ± {band[1]:.1f}"
            interval = f"[{band[0] - half_width:.1f}, {band[0] + half_width:.1f}]"
            steps = {run.steps for run in cell}
            budget = table.budget(algorithm)
            if any(step is None or step < budget for step in steps):
                trained = ", ".join(f"{step:,}" for step in sorted(s for s in steps if s is not None)) or "unknown"
                rows.append([dataset, label, ours, published, interval, f"{REDUCED} ({trained} of {budget:,} updates)"])
                continue
            rows.append([dataset, label, ours, published, interval, verdict(float(scores.mean()), band, tolerance)])
    return rows


def band_section(results, table: BandTable, tolerance: float = 0.0) -> list[tuple[str, Any]]:
    """(kind, content) blocks for the report: headings, a paragraph and one table per score kind.
    Empty when no cell is a D4RL dataset (nothing to compare)."""
    if not any(dataset_key(run.dataset_argument) or dataset_key(run.dataset) for run in results.runs):
        return []
    note = reduced_budget_note(results)
    suffix = f" — {note}" if note else ""
    blocks: list[tuple[str, Any]] = [
        ("heading", f"Published results: {table.name}{suffix}"),
        ("paragraph", f"{table.about} Source: {table.source}. A cell is 'reproduced' when its mean lies within "
                      f"the published mean ± {'max(2 std, ' + format(tolerance, 'g') + ')' if tolerance else '2 std'} "
                      f"of the published {table.seeds} seeds, 'below' or 'above' otherwise; 'no reference' when the "
                      "table has no entry; runs trained for fewer updates than the reference's budget get no verdict."),
    ]
    for which, title in (("final", "Final score vs published final"), ("best", "Best score vs published best")):
        rows = band_rows(results, table, which, tolerance)
        if rows:
            blocks.append(("subheading", f"{title}{suffix}"))
            blocks.append(("table", (["dataset", "algorithm", "offrl (mean ± std)", "published (mean ± std)",
                                      "band", "verdict"], rows)))
    return blocks
