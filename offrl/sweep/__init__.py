"""Sweeps: many trials (algorithms x datasets x hyperparameters, each with all seeds) from one spec.

    from offrl.sweep import run_sweep, select_best
    outcome = run_sweep("examples/sweep.yaml", out="sweeps/tiny")           # local process pool
    outcome = run_sweep("examples/sweep.yaml", out="sweeps/tiny", engine="ray")  # Ray
    select_best("sweeps/tiny")["groups"][0]["best"]

Each trial is an ordinary multi-seed run directory (trials/<id>/seed_<s>/), so `offrl report`
reads a sweep directory directly. See offrl.sweep.index for the layout, offrl.sweep.select for
the selection criterion, docs/ray.md for clusters.
"""

from offrl.sweep.driver import SweepOutcome, run_sweep, selection_text
from offrl.sweep.select import select_best
from offrl.sweep.spec import SweepSpec, load_spec, parse_spec

__all__ = ["SweepOutcome", "SweepSpec", "load_spec", "parse_spec", "run_sweep", "select_best", "selection_text",
           "bench_spec"]


def bench_spec(algorithms: list[str], datasets: list[str], seeds: int, train: dict | None = None,
               data_dir: str | None = None, where: str = "offrl bench") -> SweepSpec:
    """The grid spec `offrl bench` runs: every algorithm (default hyperparameters) on every dataset."""
    # One configuration per algorithm: nothing to select, so no validation rollouts are spent.
    raw = {"name": "bench", "algorithms": list(algorithms), "datasets": list(datasets), "seeds": seeds,
           "train": dict(train or {}), "data_dir": data_dir, "selection": {"criterion": "last_evals"}}
    return parse_spec(raw, where=where, base_dir=".")
