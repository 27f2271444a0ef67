"""IQL, TD3+BC and RIQL on offrl's generated medium data under RIQL-style corruption.

One command makes the corrupted datasets (if missing), runs (or resumes) one sweep per
environment and writes the table:

    nice -n 10 python benchmarks/corruption_table.py

Datasets: the `medium` level of `offrl datasets make ENV --levels random,medium,medium-replay,expert
--budget 60000 --size 50000 --seed 0 --data-dir /work/suites/data` (registered names
`ENV-medium-v0` there), corrupted with `offrl.data.corruption.corrupt_dataset` (random mode,
scale 1.0, seed 0) on 10% and 30% of the transitions, rewards or observations; 0% is the clean
data. Corrupted copies go to --work (default /work/addons21/data, outside the repository;
remade bit-identically from the seed). Sweep records (config.json, summary.json, eval.jsonl,
metrics.jsonl) are kept under benchmarks/results/corruption/; checkpoints are git-ignored.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from offrl.data.corruption import corrupt_dataset
from offrl.data.d4rl_io import write_npz
from offrl.data.registry import list_datasets, resolve_dataset

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "corruption"
ALGORITHMS = ("iql", "td3bc", "riql")
CONDITIONS = (("clean", None, 0.0), ("rewards-10", "rewards", 0.1), ("rewards-30", "rewards", 0.3),
              ("observations-10", "observations", 0.1), ("observations-30", "observations", 0.3))
SCALE = 1.0  # RIQL paper's main setting for random corruption (epsilon = 1.0)


def dataset_paths(env: str, data_dir: str, work: Path) -> dict[str, Path] | None:
    names = {entry["name"] for entry in list_datasets(data_dir)}
    name = next((n for n in sorted(names) if n.lower().startswith(f"{env}-medium-v")), None)
    if name is None:
        return None
    paths = {}
    base = None
    for label, target, rate in CONDITIONS:
        path = work / f"{env}-medium-{label}.npz"
        if not path.exists():
            base = base or resolve_dataset(name, data_dir=data_dir)
            data = base if target is None else corrupt_dataset(base, target, "random", rate, SCALE, seed=0)
            work.mkdir(parents=True, exist_ok=True)
            write_npz(data, path)
        paths[label] = path
    return paths


def write_spec(env: str, paths: dict[str, Path], steps: int, seeds: int) -> Path:
    spec = {
        "name": f"corruption-{env}",
        "algorithms": list(ALGORITHMS),
        "datasets": [str(path) for path in paths.values()],
        "seeds": list(range(seeds)),
        "train": {"steps": steps, "eval_every": steps, "eval_episodes": 10, "log_every": 1000, "checkpoint_every": steps},
    }
    path = RESULTS / f"spec-{env}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec, indent=2) + "\n")
    return path


def collect(env: str) -> dict[tuple[str, str], list[float]]:
    scores: dict[tuple[str, str], list[float]] = {}
    for summary_path in sorted((RESULTS / f"sweep-{env}").glob("trials/*/seed_*/summary.json")):
        summary = json.loads(summary_path.read_text())
        if summary.get("status") != "finished":
            continue
        config = json.loads((summary_path.parent / "config.json").read_text())
        source = Path((config.get("dataset") or {}).get("argument") or config["dataset_metadata"]["source"]).stem
        label = source.removeprefix(f"{env}-medium-")
        scores.setdefault((config["algorithm"], label), []).append(summary["final_normalized_score"])
    return scores


def write_table(envs: list[str], steps: int, seeds: int) -> Path:
    # Every environment with records, not only this call's --envs: a run for one env keeps the other's rows.
    envs = sorted(set(envs) | {path.name.removeprefix("sweep-") for path in RESULTS.glob("sweep-*") if path.is_dir()})
    lines = [f"# Corruption robustness: IQL, TD3+BC, RIQL at {steps:,} updates per seed (CPU budget), {seeds} seeds", "",
             "Final normalised score (mean ± std over seeds, n = finished seeds), 10 evaluation episodes per seed, "
             "each algorithm at its defaults (256x256 networks).", "",
             "Data: the `medium` level of `offrl datasets make ENV --levels random,medium,medium-replay,expert "
             "--budget 60000 --size 50000 --seed 0 --data-dir /work/suites/data` (a CPU-scale D4RL recipe: 50,000 "
             "transitions, the behaviour SAC trained for 60,000 steps; scores normalised by that suite's own random "
             "and expert returns). Corruption: `offrl.data.corruption.corrupt_dataset` (RIQL's protocol), random "
             f"mode, scale {SCALE}, seed 0, on 10% or 30% of the transitions' rewards (U(-1, 1) * 30) or "
             "observations (x + U(-1, 1) * std).", "",
             "Machine: the shared 2-core x86 CPU, no GPU, under heavy load from other jobs (the run was niced).", "",
             "Resume or finish (finished trials are skipped; an interrupted one continues from its checkpoint):", "",
             "    nice -n 10 python benchmarks/corruption_table.py", "",
             "'not run' = the trial has not finished yet.", ""]
    for env in envs:
        scores = collect(env)
        lines += [f"## {env}-medium", "", "| algorithm | " + " | ".join(label for label, _, _ in CONDITIONS) + " |",
                  "|---|" + "---|" * len(CONDITIONS)]
        for algo in ALGORITHMS:
            cells = []
            for label, _, _ in CONDITIONS:
                values = scores.get((algo, label), [])
                cells.append(f"{np.mean(values):.1f} ± {np.std(values):.1f} (n={len(values)})" if values else "not run")
            lines.append(f"| {algo} | " + " | ".join(cells) + " |")
        lines.append("")
    out = RESULTS / "table.md"
    out.write_text("\n".join(lines))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", default="halfcheetah,hopper")
    parser.add_argument("--steps", type=int, default=5_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--data-dir", default="/work/suites/data")
    parser.add_argument("--work", default="/work/addons21/data")
    parser.add_argument("--table-only", action="store_true", help="only rewrite the table from the records")
    args = parser.parse_args()
    envs = [env.strip() for env in args.envs.split(",") if env.strip()]
    if not args.table_only:
        for env in envs:
            paths = dataset_paths(env, args.data_dir, Path(args.work))
            if paths is None:
                print(f"{env}: no medium dataset in {args.data_dir} yet; skipped", flush=True)
                continue
            spec = write_spec(env, paths, args.steps, args.seeds)
            subprocess.run([sys.executable, "-m", "offrl.cli", "sweep", str(spec), "--out", str(RESULTS / f"sweep-{env}"),
                            "--workers", "1"], check=False)
            print(write_table(envs, args.steps, args.seeds), flush=True)
    print(write_table(envs, args.steps, args.seeds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
