"""offrl's safe offline RL table on its own velocity-constrained datasets, in DSRL's protocol.

One command runs (or resumes) every missing cell and rewrites the table:

    nice -n 10 python benchmarks/safe_table.py                          # everything, in priority order
    nice -n 10 python benchmarks/safe_table.py --algos bc_safe --datasets hopper
    python benchmarks/safe_table.py --table-only

Data (2026-12-04 makes; the first make's cells, on a set today's code does not remake, are in
benchmarks/results/safe-table-first-make/):

    offrl datasets make offrl/SafetyHopperVelocity-v1 --safe --budget 20000 --size 50000 --seed 0 \
        --data-dir /work/suites/data                                           # 14 min on one core
    offrl datasets make offrl/SafetyHalfCheetahVelocity-v1 --safe --budget 60000 --size 50000 --seed 0 \
        --snapshot-span whole --snapshots-per-agent 4 --data-dir /work/suites/data

(offrl/suites/safe_recipe.py: an unconstrained SAC agent and SAC-Lag agents at four cost limits,
mixed; a CPU-scale version of DSRL's recipe). HalfCheetah needs the longer budget: at 20,000 steps
its unconstrained SAC agent returns 23 and pays 0.2 per episode (it never passes Safety-Gymnasium's
3.21 m/s), so its set would hold no trade-off; at 60,000 it runs at about 3.4 m/s and pays ~720
per episode, and snapshots over the whole of training (`--snapshot-span whole`, 4 per agent) put
early, cheap policies in the set beside the costly ones, which κ 20/40/80 need.

A cell is one algorithm at one target cost κ on one dataset, 3 seeds in one program
(`offrl sweep`), at OSRL's defaults with OSRL's per-task settings for the matching DSRL velocity task
when offrl has them as presets (`offrl presets ALGO`; e.g. T = 1000 steps per episode), and these CPU
changes, said in the table: `--steps` updates. CDT is trained once per dataset (its cell
`cdt`, trained at the first κ) and evaluated conditioned on each κ, as OSRL evaluates one CDT at
its task's target costs (`offrl evaluate --target-cost`; lines in `cdt/conditioned.jsonl`), with
its return target from the data (OSRL's are absolute DSRL returns, e.g. 1,750 for Hopper, another
scale than this data's). It is the dearest cell on a CPU: at OSRL's 3-layer, 128-wide transformer,
batch 2048 and T = 1000, one program of 3 seeds did not finish its first 1,000 updates in 16
minutes on a free core even at batch 256 (2026-12-04), so its cells ran on a lent GPU
(benchmarks/device_cells.py) at OSRL's batch. κ ∈ {20, 40, 80}: OSRL's target costs for the
velocity tasks (examples/configs/cdt_configs.py target_returns). Scores: DSRL's normalised reward (R − R_min)/(R_max − R_min) with the dataset's
reference returns, and normalised cost (C + ε)/(κ + ε); a cell is safe when its normalised cost is at
most 1; the last columns average over the three κ, as OSRL's tables do.

Records (config.json, summary.json, eval.jsonl, metrics.jsonl per seed; sweep.json, spec.json per
cell) land in benchmarks/results/safe-table/; checkpoints are git-ignored.
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
RESULTS = HERE / "results" / "safe-table"
ALGORITHMS = ("bc_all", "bc_safe", "coptidice", "bcq_lag", "cdt", "cpq")  # cheap and sure first
ROBOTS = {"hopper": "Hopper", "halfcheetah": "HalfCheetah"}
KAPPAS = (20.0, 40.0, 80.0)  # OSRL examples/configs/cdt_configs.py velocity tasks' target costs


def dataset_name(robot: str) -> str:
    return f"safety{robot}velocity-safe-v0"


OVERRIDES: dict = {}  # --config-json: a smoke run's small settings, merged into every cell's config


def cell_config(algo: str, robot: str, kappa: float) -> dict:
    """OSRL's per-task preset of the DSRL velocity task (when offrl has one), κ, and the CPU changes."""
    preset = load_presets(algo).get(f"Offline{ROBOTS[robot]}VelocityGymnasium-v1")
    config = dict(preset.config) if preset else {}
    config["target_cost"] = kappa
    if algo == "cdt":  # return targets from the data: OSRL's are DSRL's absolute returns, another scale than this data's
        config.update(target_return=None, augment_max_return=None, augment_max_return_decrease=None)
    return {**config, **OVERRIDES}


def cell_name(algo: str, kappa: float) -> str:
    return "cdt" if algo == "cdt" else f"{algo}-k{kappa:g}"  # CDT: one model, conditioned on each κ at evaluation


def write_spec(algo: str, robot: str, kappa: float, steps: int, seeds: int, data_dir: str, episodes: int = 10) -> Path:
    spec = {
        "name": f"{algo}-{robot}-k{kappa:g}",
        "algorithms": [algo],
        "datasets": [dataset_name(robot)],
        "seeds": list(range(seeds)),
        "train": {"steps": steps, "eval_every": steps, "eval_episodes": episodes, "log_every": min(1000, steps), "checkpoint_every": steps // 2},
        "config": {algo: cell_config(algo, robot, kappa)},
        "data_dir": data_dir,
    }
    path = RESULTS / robot / cell_name(algo, kappa) / "spec.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec, indent=2) + "\n")
    return path


def conditioned_evaluations(cell: Path, episodes: int = 10) -> Path:
    """Evaluate each finished seed of a CDT cell conditioned on every κ (once; appended to
    conditioned.jsonl): DSRL's normalised reward and cost, as the summaries of the other cells."""
    from offrl.evaluate.safe_scores import evaluate_at_target_costs
    from offrl.train.policy import load_policy

    out = cell / "conditioned.jsonl"
    done = {(r["run"], r["target_cost"]) for r in map(json.loads, out.read_text().splitlines())} if out.exists() else set()
    for summary_path in sorted(cell.glob("sweep/trials/*/seed_*/summary.json")):
        run_dir = summary_path.parent
        run = str(run_dir.relative_to(cell))
        todo = [k for k in KAPPAS if (run, k) not in done]
        if json.loads(summary_path.read_text()).get("status") != "finished" or not todo:
            continue
        config = json.loads((run_dir / "config.json").read_text())
        meta = config.get("dataset_metadata", {})
        for (record, stats), kappa in zip(evaluate_at_target_costs(load_policy(run_dir), config["env_id"], todo, episodes, 10_000,
                                                                   meta.get("ref_min_score"), meta.get("ref_max_score")), todo):
            record.update(run=run, seed=int(run_dir.name.removeprefix("seed_")), episodes=episodes, evaluation_seed=10_000,
                          final_return=stats.mean_return, final_cost=stats.mean_cost, final_normalized_cost=record["normalized_cost"],
                          final_normalized_reward=record.get("normalized_reward"))
            with out.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
    return out


def collect() -> dict[tuple[str, str, float], list[dict]]:
    cells: dict[tuple[str, str, float], list[dict]] = {}
    for summary_path in sorted(RESULTS.glob("*/*-k*/sweep/trials/*/seed_*/summary.json")):
        summary = json.loads(summary_path.read_text())
        if summary.get("status") != "finished" or "final_normalized_cost" not in summary:
            continue
        robot, cell = summary_path.parts[-7], summary_path.parts[-6]
        algo, _, kappa = cell.rpartition("-k")
        summary["device"] = run_device(summary_path.parent)
        cells.setdefault((algo, robot, float(kappa)), []).append(summary)
    for conditioned in sorted(RESULTS.glob("*/cdt/conditioned.jsonl")):  # one model per robot, a row per κ
        for record in map(json.loads, conditioned.read_text().splitlines()):
            record["device"] = run_device(conditioned.parent / record["run"])
            cells.setdefault(("cdt", conditioned.parts[-3], float(record["target_cost"])), []).append(record)
    return cells


def run_device(run_dir: Path) -> str:
    config = run_dir / "config.json"
    return json.loads(config.read_text()).get("device", "cpu") if config.exists() else "cpu"


def _pair(summaries: list[dict]) -> tuple[float, float]:
    return (float(np.mean([s.get("final_normalized_reward", np.nan) for s in summaries])),
            float(np.mean([s["final_normalized_cost"] for s in summaries])))


def write_table(steps: int, seeds: int) -> Path:
    cells = collect()
    robots = [r for r in ROBOTS if any(key[1] == r for key in cells)] or list(ROBOTS)
    lines = [f"# Safe offline RL on offrl's velocity datasets: {steps:,} updates per seed (CPU budget), {seeds} seeds, "
             f"target costs {', '.join(f'{k:g}' for k in KAPPAS)}", "",
             "DSRL's protocol: normalised reward / normalised cost (mean over seeds; 10 evaluation episodes per seed); "
             "a cell is safe when its normalised cost is at most 1 (bold: unsafe). 'mean' averages the three target "
             "costs as OSRL's tables do, over the κ with finished seeds. OSRL's defaults and per-task settings; CDT "
             "trained once per dataset and evaluated conditioned on each κ, with return targets from the data. OSRL "
             "trains 100k-200k updates: these are short-budget numbers.", "",
             "Data: `offrl datasets make offrl/SafetyHopperVelocity-v1 --safe --budget 20000 --size 50000 --seed 0` and "
             "`offrl datasets make offrl/SafetyHalfCheetahVelocity-v1 --safe --budget 60000 --size 50000 --seed 0 "
             "--snapshot-span whole --snapshots-per-agent 4` (SAC and SAC-Lag behaviour agents; the made set's sha256 "
             "is in each run's config.json).", "",
             "Machine: the project's shared 2-core x86 CPU, no GPU (cells niced beside other work), except cells marked GPU: "
             "one H200 lent for one session (benchmarks/device_cells.py, up to 8 cells side by side; jax 0.11.2 there, "
             "0.10.2 here; the device is in each run's config.json).", "",
             "Run, resume or extend: `nice -n 10 python benchmarks/safe_table.py` ('–' = no finished seed yet).", ""]
    header = ["algorithm"] + [f"{robot} κ={k:g}" for robot in robots for k in KAPPAS] + [f"{robot} mean" for robot in robots]
    lines += ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]

    def text(reward: float, cost: float) -> str:
        body = f"{reward:.2f} / {cost:.2f}"
        return body if cost <= 1.0 else f"**{body}**"

    for algo in ALGORITHMS:
        row, means = [algo], []
        for robot in robots:
            pairs = []
            for kappa in KAPPAS:
                summaries = cells.get((algo, robot, kappa), [])
                if summaries:
                    pairs.append(_pair(summaries))
                gpu = ", GPU" if any(str(s.get("device", "cpu")).startswith(("cuda", "gpu")) for s in summaries) else ""
                row.append(f"{text(*pairs[-1])} (n={len(summaries)}{gpu})" if summaries else "–")
            means.append(text(*np.mean(pairs, axis=0)) if pairs else "–")
        lines.append("| " + " | ".join(row + means) + " |")
    out = RESULTS / "table.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return out


def registered(data_dir: str) -> str:
    return subprocess.run([sys.executable, "-m", "offrl.cli", "datasets", "list", "--data-dir", data_dir],
                          capture_output=True, text=True, check=False).stdout


def main() -> int:
    global RESULTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", default=",".join(ALGORITHMS))
    parser.add_argument("--datasets", default=",".join(ROBOTS), help="robots: hopper, halfcheetah")
    parser.add_argument("--steps", type=int, default=5_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--config-json", default="{}", help="settings merged into every cell's config (a smoke run's)")
    parser.add_argument("--episodes", type=int, default=10, help="evaluation episodes per seed")
    parser.add_argument("--kappas", default=",".join(f"{k:g}" for k in KAPPAS), help="run only these κ's cells (CDT: trains once)")
    parser.add_argument("--data-dir", default="/work/suites/data")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--out", default=str(HERE / "results" / "safe-table"), help="results directory (a scratch one for a smoke run)")
    args = parser.parse_args()
    RESULTS = Path(args.out)
    OVERRIDES.update(json.loads(args.config_json))
    algos = [a for a in args.algos.split(",") if a]
    robots = [r for r in args.datasets.split(",") if r]
    unknown = sorted(set(algos) - set(ALGORITHMS)) + sorted(set(robots) - set(ROBOTS))
    if unknown:
        parser.error(f"--algos/--datasets name {', '.join(unknown)}; expected names from {ALGORITHMS} and {tuple(ROBOTS)}.")
    if not args.table_only:
        kappas = [float(k) for k in args.kappas.split(",") if k]
        for robot in robots:
            for algo in algos:
                for kappa in kappas[:1] if algo == "cdt" else kappas:
                    if dataset_name(robot) not in registered(args.data_dir):
                        print(f"{dataset_name(robot)}: not in {args.data_dir} yet (offrl datasets make --safe); skipped", flush=True)
                        break
                    spec = write_spec(algo, robot, kappa, args.steps, args.seeds, args.data_dir, args.episodes)
                    subprocess.run([sys.executable, "-m", "offrl.cli", "sweep", str(spec), "--out", str(spec.parent / "sweep"),
                                    "--workers", "1", "--no-progress"], check=False)
                    if algo == "cdt":
                        conditioned_evaluations(spec.parent, args.episodes)
                    write_table(args.steps, args.seeds)
    print(write_table(args.steps, args.seeds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
