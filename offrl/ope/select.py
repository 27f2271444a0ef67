"""Choose a checkpoint or configuration from offline estimates, and show what other criteria pick.

Candidates are every checkpoint step of every run directory found under the given paths (a run,
a multi-seed directory, a sweep). Criteria:
- `fqe`: the FQE estimate (from the run's ope.jsonl when it was computed with the same settings,
  else computed now with them);
- `validation-td`: the critic's TD error on the held-out validation episodes (validation.jsonl;
  lower is better; needs `--validation-fraction` at training and an algorithm with a critic);
- `online`: the mean evaluation return (eval.jsonl), when a simulator was available.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from offrl.errors import ConfigError
from offrl.ope.evaluate_run import OPEConfig, estimator_settings, evaluate_run
from offrl.train.checkpoint import checkpoint_files
from offrl.train.run_dir import RunDirectory
from offrl.train.validation import validation_td

CRITERIA = ("fqe", "validation-td", "online")


def find_runs(paths: list[str]) -> list[Path]:
    runs: list[Path] = []
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise ConfigError(f"'{path}' does not exist; expected a run directory or a directory holding runs.")
        found = [path] if (path / "config.json").is_file() else sorted(p.parent for p in path.rglob("config.json") if (p.parent / "checkpoints").is_dir())
        runs.extend(p for p in found if p not in runs)
    if not runs:
        raise ConfigError(f"No run directory (config.json with checkpoints/) under {', '.join(paths)}; expected runs trained by offrl.")
    return runs


def _candidates(run: Path, by: str, config: OPEConfig) -> list[dict[str, Any]]:
    directory = RunDirectory(run)
    steps = [int(p.stem.split("_")[1]) for p in checkpoint_files(directory.checkpoints)]
    # Estimates `offrl ope` left are reused only when computed with the settings asked for here.
    settings = estimator_settings(config, "fqe")
    fqe = {r["checkpoint_step"]: r for r in directory.read_records("ope.jsonl")
           if r.get("method") == "fqe" and r.get("settings") == settings}
    if by == "fqe" and not all(step in fqe for step in steps):
        fqe = {r["checkpoint_step"]: r for r in evaluate_run(run, ("fqe",), config)["policies"]}
    td = {r["step"]: validation_td(r) for r in directory.read_records("validation.jsonl")}
    online = {r["step"]: r.get("return_mean") for r in directory.read_records("eval.jsonl")}
    rows = []
    for step in steps:
        rows.append({"run": str(run), "checkpoint_step": step,
                     "fqe": fqe[step]["estimate"] if step in fqe else None,
                     "fqe_low": fqe[step]["low"] if step in fqe else None,
                     "fqe_high": fqe[step]["high"] if step in fqe else None,
                     "validation-td": td.get(step), "online": online.get(step)})
    return rows


def _best(rows: list[dict[str, Any]], criterion: str) -> dict[str, Any] | None:
    scored = [row for row in rows if row[criterion] is not None]
    if not scored:
        return None
    sign = -1.0 if criterion == "validation-td" else 1.0  # a smaller TD error is better
    return max(scored, key=lambda row: sign * row[criterion])


def select_policies(paths: list[str], by: str, config: OPEConfig = OPEConfig()) -> dict[str, Any]:
    if by not in CRITERIA:
        raise ConfigError(f"--by {by} is not known; expected one of {', '.join(CRITERIA)}.")
    rows = [row for run in find_runs(paths) for row in _candidates(run, by, config)]
    chosen = _best(rows, by)
    if chosen is None:
        need = {"validation-td": "validation.jsonl (train with --validation-fraction, an algorithm with a critic)",
                "online": "eval.jsonl (a run with an environment)", "fqe": "checkpoints"}[by]
        raise ConfigError(f"No candidate has a '{by}' value; expected {need}.")
    alternatives = {}
    for criterion in CRITERIA:
        best = _best(rows, criterion)
        alternatives[criterion] = None if best is None else {"run": best["run"], "checkpoint_step": best["checkpoint_step"],
                                                             "online": best["online"], "fqe": best["fqe"]}
    return {"by": by, "chosen": chosen, "choice_by_criterion": alternatives, "candidates": rows}


def format_selection(selection: dict[str, Any]) -> str:
    def number(value):
        return "-" if value is None else f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"

    chosen = selection["chosen"]
    lines = [f"chosen by {selection['by']}: {chosen['run']} step {chosen['checkpoint_step']}", "",
             f"{'run':40s} {'step':>9s} {'fqe':>10s} {'fqe interval':>22s} {'val-td':>9s} {'online':>9s}"]
    for row in selection["candidates"]:
        interval = "-" if row["fqe_low"] is None else f"[{number(row['fqe_low'])}, {number(row['fqe_high'])}]"
        mark = " *" if row is chosen or (row["run"], row["checkpoint_step"]) == (chosen["run"], chosen["checkpoint_step"]) else ""
        lines.append(f"{Path(row['run']).name[-40:]:40s} {row['checkpoint_step']:>9d} {number(row['fqe']):>10s} "
                     f"{interval:>22s} {number(row['validation-td']):>9s} {number(row['online']):>9s}{mark}")
    lines.append("")
    for criterion, best in selection["choice_by_criterion"].items():
        if best is None:
            lines.append(f"by {criterion}: no values")
        else:
            online = "" if best["online"] is None else f" (online return {number(best['online'])})"
            lines.append(f"by {criterion}: {Path(best['run']).name} step {best['checkpoint_step']}{online}")
    return "\n".join(lines)
