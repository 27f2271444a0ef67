"""offrl's own score table on its generated D4RL-style suites: model-free, model-based and generative.

One command runs (or resumes) every missing cell and rewrites the table and the report:

    nice -n 10 python benchmarks/suite_table.py                       # everything, in priority order
    nice -n 10 python benchmarks/suite_table.py --algos td3bc,mopo --datasets hopper-medium
    python benchmarks/suite_table.py --table-only                     # rewrite table.md from the records

Data: `offrl datasets make ENV --levels random,medium,medium-replay,expert --budget 60000 --size 50000
--seed 0 --data-dir /work/suites/data` (a CPU-scale D4RL recipe: 50,000 transitions; scores are
normalised by that suite's own random and expert returns). Each cell is one `offrl sweep` (its own
directory, so cells are added or resumed independently): the algorithm on one dataset, 3 seeds in one
program, at the algorithm's defaults with the per-dataset preset of the matching D4RL dataset applied
(`offrl presets ALGO`: e.g. MOPO's rollout length and penalty for hopper-medium-v2 on
hopper-medium-v0; the presets' 1M/3M budgets are not: every cell gets --steps). Dynamics ensembles
(MOPO, MOBILE) are trained once per dataset into the data directory's model cache, capped at
DYNAMICS_EPOCHS epochs (a CPU budget; the reference trains until 5 epochs pass without improvement).

Records (config.json, summary.json, eval.jsonl, metrics.jsonl) land in benchmarks/results/suite-table/;
checkpoints are git-ignored.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from offrl.train.presets import load_presets

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "suite-table"
# Priority order: issue 16's model-free columns on every dataset first, then the families' columns,
# the cheaper ones (MOPO ~10 min, IDQL ~25 min, MOBILE ~45 min per cell on a shared core) on every
# dataset before FQL (~100 min per cell at its default 4 x 512 networks: 1.7 updates/s per seed on a shared core,
# 5 updates/s for 3 seeds on a free one).
MODEL_FREE = ("bc", "td3bc", "iql", "awac", "rebrac")
FAMILIES = ("mopo", "mobile", "idql", "edp", "fql")
SLOW_FAMILIES = ("fql",)
ALGORITHMS = MODEL_FREE + FAMILIES
DATASETS = ("hopper-medium", "halfcheetah-medium", "hopper-medium-replay", "halfcheetah-medium-replay",
            "walker2d-medium", "walker2d-medium-replay")
DYNAMICS_EPOCHS = 50
MODEL_BASED = ("mopo", "mobile", "combo", "ravl")


def cell_config(algo: str, dataset: str) -> dict:
    """The algorithm's preset for the matching D4RL -v2 dataset (config fields only) plus the CPU caps."""
    preset = load_presets(algo).get(f"{dataset}-v2")
    config = dict(preset.config) if preset else {}
    if algo in MODEL_BASED:
        config["dynamics_max_epochs"] = DYNAMICS_EPOCHS
    return config


def write_spec(algo: str, dataset: str, steps: int, seeds: int, data_dir: str) -> Path:
    spec = {
        "name": f"{algo}-{dataset}",
        "algorithms": [algo],
        "datasets": [f"{dataset}-v0"],
        "seeds": list(range(seeds)),
        "train": {"steps": steps, "eval_every": steps // 2, "eval_episodes": 10, "log_every": 1000,
                  "checkpoint_every": steps // 4},
        "config": {algo: cell_config(algo, dataset)},
        "data_dir": data_dir,
    }
    path = RESULTS / dataset / algo / "spec.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec, indent=2) + "\n")
    return path


def collect() -> dict[tuple[str, str], list[float]]:
    scores: dict[tuple[str, str], list[float]] = {}
    for summary_path in sorted(RESULTS.glob("*/*/sweep/trials/*/seed_*/summary.json")):
        summary = json.loads(summary_path.read_text())
        if summary.get("status") != "finished":
            continue
        dataset, algo = summary_path.parts[-7], summary_path.parts[-6]
        scores.setdefault((algo, dataset), []).append(summary["final_normalized_score"])
        config = json.loads((summary_path.parent / "config.json").read_text())
        if str(config.get("device", "cpu")).startswith(("cuda", "gpu")):
            ON_GPU.add((algo, dataset))
    return scores


ON_GPU: set[tuple[str, str]] = set()  # cells whose runs' config.json name a GPU device


def write_table(steps: int, seeds: int) -> Path:
    scores = collect()
    datasets = [d for d in DATASETS if any(key[1] == d for key in scores)] or list(DATASETS)
    lines = [f"# offrl on its generated suites: {steps:,} updates per seed (CPU budget), {seeds} seeds", "",
             "Final normalised score (mean ± std over seeds, n = finished seeds; 10 evaluation episodes per seed). "
             "Each algorithm at its defaults with the per-dataset preset of the matching D4RL dataset "
             "(`offrl presets ALGO`); MOPO/MOBILE dynamics ensembles capped at "
             f"{DYNAMICS_EPOCHS} epochs. The references train for 1M (3M for MOBILE) updates: "
             "these are short-budget numbers, comparable with each other, not with the papers.", "",
             "Data: `offrl datasets make ENV --levels random,medium,medium-replay,expert --budget 60000 "
             "--size 50000 --seed 0 --data-dir /work/suites/data` (normalised by the suite's own random and "
             "expert returns).", "",
             "Machine: the project's shared 2-core x86 CPU, no GPU; cells ran niced, one at a time on one core "
             "beside other work; except cells marked GPU: one H200 lent for one session (benchmarks/device_cells.py, "
             "up to 8 cells side by side; the device is in each run's config.json).", "",
             "Run, resume or extend: `nice -n 10 python benchmarks/suite_table.py` ('not run' = no finished seed yet).",
             "", "| algorithm | " + " | ".join(datasets) + " |", "|---|" + "---|" * len(datasets)]
    for algo in ALGORITHMS:
        cells = []
        for dataset in datasets:
            values = scores.get((algo, dataset), [])
            gpu = ", GPU" if (algo, dataset) in ON_GPU else ""
            cells.append(f"{np.mean(values):.1f} ± {np.std(values):.1f} (n={len(values)}{gpu})" if values else "not run")
        lines.append(f"| {algo} | " + " | ".join(cells) + " |")
    out = RESULTS / "table.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return out


def registered(data_dir: str) -> set[str]:
    listing = subprocess.run([sys.executable, "-m", "offrl.cli", "datasets", "list", "--data-dir", data_dir],
                             capture_output=True, text=True, check=False).stdout
    return {name for name in (f"{d}-v0" for d in DATASETS) if name in listing}


def main() -> int:
    global RESULTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", default=",".join(ALGORITHMS))
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--data-dir", default="/work/suites/data")
    parser.add_argument("--table-only", action="store_true", help="only rewrite table.md and the report from the records")
    parser.add_argument("--out", default=str(RESULTS), help="results directory (another one for another dataset's make)")
    args = parser.parse_args()
    RESULTS = Path(args.out)
    algos = [a for a in args.algos.split(",") if a]
    datasets = [d for d in args.datasets.split(",") if d]
    unknown = sorted(set(algos) - set(ALGORITHMS)) + sorted(set(datasets) - set(DATASETS))
    if unknown:
        parser.error(f"--algos/--datasets name {', '.join(unknown)}; expected names from {ALGORITHMS} and {DATASETS}.")
    if not args.table_only:
        cheap_families = tuple(a for a in FAMILIES if a not in SLOW_FAMILIES)
        cells = [(algo, dataset) for group in (MODEL_FREE, cheap_families, SLOW_FAMILIES) for dataset in datasets
                 for algo in group if algo in algos]
        for algo, dataset in cells:
            # Looked up per cell, so a suite made while the table runs (walker2d) joins it.
            if f"{dataset}-v0" not in registered(args.data_dir):
                print(f"{algo} on {dataset}: not in {args.data_dir} yet (offrl datasets make); skipped", flush=True)
                continue
            spec = write_spec(algo, dataset, args.steps, args.seeds, args.data_dir)
            subprocess.run([sys.executable, "-m", "offrl.cli", "sweep", str(spec), "--out", str(spec.parent / "sweep"),
                            "--workers", "1", "--no-progress"], check=False)
            write_table(args.steps, args.seeds)
        subprocess.run([sys.executable, "-m", "offrl.cli", "report", str(RESULTS), "--out", str(RESULTS),
                        "--format", "md", "--bands", "none"], check=False)
    print(write_table(args.steps, args.seeds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
