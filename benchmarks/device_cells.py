"""Run many table cells at once on a lent GPU machine, in one call of the device tool.

The tables' cells (benchmarks/safe_table.py, benchmarks/suite_table.py, SynthER's TD3+BC arms) run
on a 2-core CPU in minutes to hours each; CDT's, at OSRL's batch of 2,048 windows, does not fit
there at all. When a session is lent a GPU machine (one H200, 16 cores, 15 minutes for the whole
session), this script runs them side by side in one call:

    python3 benchmarks/device_cells.py --data-dir /tmp/data --synther-npz .device/hopper-medium-remade-synther.npz \
        --results /tmp/results --out "$OUT" --deadline 470

Each job is its own process (one table cell, or one `offrl train` of several seeds in one
program), up to --parallel at a time on the one GPU (XLA_PYTHON_CLIENT_PREALLOCATE=false, so they
share its memory as they need it; MuJoCo evaluation runs on the CPU cores). Jobs start in the
order of JOBS; a job whose data is missing is skipped. At --deadline seconds after the start the
jobs still running are stopped (a killed sweep leaves its seeds unfinished in their summaries),
and every record except checkpoints and caches, each job's log, and machine.json (GPU, packages,
each job's start, end and exit status) are packed into OUT/records.tgz. Each job writes into its
own directory under --results (no two processes rewrite one table); back here, those directories
are copied into benchmarks/results/ (their layout is the tables') and the tables rewritten with
--table-only.

Measured (2026-12-04, one H200, jax 0.11.2, 8 jobs at a time, --deadline 440): SynthER's two
10-seed TD3+BC arms took 96 and 100 s, CPQ's cells 160–286 s each, BCQ-Lag's 180 s, the suite's
FQL, EDP, TD3+BC, IQL and BC cells on halfcheetah-medium 100–225 s; CDT's two cells reached 4,000
of 5,000 updates (13 updates/s for 3 seeds at batch 2,048, shared) and were stopped; a second call
on the same warm machine resumed them from their step-2,500 checkpoints, two jobs alone (15
updates/s), and finished in 204 and 228 s. Jobs not started by the deadline (the remaining suite
cells) ran on the CPU instead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

SUITE_DATASETS = ("halfcheetah-medium", "halfcheetah-medium-replay", "walker2d-medium", "walker2d-medium-replay")
SUITE_ALGOS = ("fql", "edp", "td3bc", "iql", "bc", "awac", "idql")  # issue 19's columns first, then the anchors
SAFE_ROBOTS = ("hopper", "halfcheetah")
KAPPAS = ("20", "40", "80")


def jobs(data_dir: str, synther_npz: str, results: str) -> list[tuple[str, list[str], str | None]]:
    """(name, argv, dataset it needs) in priority order."""
    py = sys.executable
    out: list[tuple[str, list[str], str | None]] = []
    for robot in SAFE_ROBOTS:  # CDT: one model per robot at OSRL's batch, evaluated conditioned on each κ
        out.append((f"safe-{robot}-cdt", [py, "benchmarks/safe_table.py", "--algos", "cdt", "--datasets", robot, "--steps", "5000",
                                          "--data-dir", data_dir, "--out", f"{results}/safe/{robot}-cdt"], f"safety{robot}velocity-safe-v0"))
    td3bc = [py, "-m", "offrl.cli", "train", "td3bc", "--seeds", "10", "--steps", "10000", "--eval-every", "5000", "--eval-episodes", "10",
             "--log-every", "1000", "--checkpoint-every", "5000", "--no-progress"]
    out.append(("synther-real", td3bc + ["--dataset", "hopper-medium-v0", "--data-dir", data_dir, "--run-dir", f"{results}/synther/real"],
                "hopper-medium-v0"))
    out.append(("synther-mix", td3bc + ["--dataset", synther_npz, "--synthetic-ratio", "0.5", "--run-dir", f"{results}/synther/ratio-0.5"],
                synther_npz))
    for robot in SAFE_ROBOTS:
        for kappa in KAPPAS:
            out.append((f"safe-{robot}-cpq-k{kappa}", [py, "benchmarks/safe_table.py", "--algos", "cpq", "--datasets", robot, "--kappas", kappa,
                                                       "--data-dir", data_dir, "--out", f"{results}/safe/{robot}-cpq-k{kappa}"],
                        f"safety{robot}velocity-safe-v0"))
    for kappa in KAPPAS[1:]:  # BCQ-Lag's HalfCheetah cells beyond the one the CPU ran
        out.append((f"safe-halfcheetah-bcq_lag-k{kappa}", [py, "benchmarks/safe_table.py", "--algos", "bcq_lag", "--datasets", "halfcheetah",
                                                           "--kappas", kappa, "--data-dir", data_dir, "--out", f"{results}/safe/halfcheetah-bcq_lag-k{kappa}"],
                    "safetyhalfcheetahvelocity-safe-v0"))
    for dataset in SUITE_DATASETS:
        for algo in SUITE_ALGOS:
            out.append((f"suite-{dataset}-{algo}", [py, "benchmarks/suite_table.py", "--algos", algo, "--datasets", dataset, "--data-dir", data_dir,
                                                    "--out", f"{results}/suite/{dataset}-{algo}"], f"{dataset}-v0"))
    out.append(("synther-only", td3bc + ["--dataset", synther_npz, "--synthetic-ratio", "1.0", "--run-dir", f"{results}/synther/ratio-1.0"],
                synther_npz))
    return out


def available(need: str | None, data_dir: str) -> bool:
    if need is None:
        return True
    return Path(need).exists() if need.endswith(".npz") else (Path(data_dir) / "datasets" / need).is_dir()


def machine() -> dict:
    info: dict = {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()}
    try:
        info["gpu"] = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                                     capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError) as error:
        info["gpu"] = f"nvidia-smi failed: {error}"
    import importlib.metadata as metadata

    for name in ("jax", "jaxlib", "flax", "optax", "numpy", "gymnasium", "mujoco"):
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            info[name] = None
    return info


def pack(results: Path, logs: Path, out: Path, record: dict) -> None:
    (logs / "machine.json").write_text(json.dumps(record, indent=1) + "\n")
    skip = ("checkpoints", ".jax-cache", "stale")

    def keep(info: tarfile.TarInfo):
        parts = Path(info.name).parts
        return None if any(p in skip for p in parts) or info.name.endswith(".lock") else info

    with tarfile.open(out / "records.tgz", "w:gz") as tar:
        if results.exists():
            tar.add(results, arcname="results", filter=keep)
        tar.add(logs, arcname="logs")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--synther-npz", required=True)
    parser.add_argument("--results", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--deadline", type=float, default=470.0, help="seconds after the start at which running jobs are stopped")
    parser.add_argument("--parallel", type=int, default=8, help="jobs at once (one GPU, time-shared between processes)")
    parser.add_argument("--only", default="", help="comma-separated job names (a smoke run)")
    parser.add_argument("--extra", default="", help="arguments appended to every table job (a smoke run's small settings)")
    args = parser.parse_args()
    start = time.time()
    results, out = Path(args.results), Path(args.out)
    logs = results.parent / "device-logs"
    logs.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false", "PYTHONUNBUFFERED": "1"}
    record: dict = {"machine": machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)), "jobs": {}}
    print(json.dumps(record["machine"]), flush=True)
    queue = [job for job in jobs(args.data_dir, args.synther_npz, args.results) if not args.only or job[0] in args.only.split(",")]
    running: dict[str, tuple[subprocess.Popen, float]] = {}
    while queue or running:
        now = time.time() - start
        for name, (process, began) in list(running.items()):
            if process.poll() is not None or now > args.deadline:
                if process.poll() is None:  # the whole group: a table script's sweep and its trials too
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
                record["jobs"][name] = {"start_s": round(began, 1), "end_s": round(time.time() - start, 1), "returncode": process.returncode,
                                        "stopped_at_deadline": now > args.deadline and process.returncode not in (0, 1, 2)}
                print(f"{now:6.0f}s end {name}: {process.returncode}", flush=True)
                del running[name]
        if now > args.deadline:
            record["jobs"].update({name: {"not_started": "deadline"} for name, _, _ in queue})
            break
        while queue and len(running) < args.parallel:
            name, argv, need = queue.pop(0)
            if not available(need, args.data_dir):
                record["jobs"][name] = {"skipped": f"{need} not present"}
                continue
            if args.extra and "benchmarks/" in " ".join(argv):
                argv = argv + args.extra.split()
            handle = open(logs / f"{name}.log", "w")
            running[name] = (subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True), time.time() - start)
            print(f"{time.time() - start:6.0f}s start {name}", flush=True)
        time.sleep(2)
    record["finished_s"] = round(time.time() - start, 1)
    pack(results, logs, out, record)
    print(json.dumps({k: v for k, v in record.items() if k != "machine"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
