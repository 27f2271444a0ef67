"""`offrl bench-speed`: the speed report of issue 9, printed as it is measured.

Per algorithm: offrl's updates/s, d3rlpy's (with `--against d3rlpy`, measured right after in a
subprocess of `--d3rlpy-python`), the ratio, compile time and the fraction of the machine's matmul
rate (offrl.bench.speed explains each figure). Then evaluation throughput, peak memory of a
1M-transition training run and, from a source checkout, benchmarks/load_time.py and
benchmarks/seeds.py. Numbers compare only within one run: the header states the machine and its
load average.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from offrl.algos import ALGORITHMS
from offrl.bench import speed
from offrl.errors import ConfigError

DEFAULT_ALGORITHMS = "bc,td3bc,iql,cql,awac,rebrac,calql,dt"


def add_command(commands) -> None:
    sub = commands.add_parser(
        "bench-speed", help="updates/s per algorithm (optionally beside d3rlpy), matmul efficiency, eval throughput, memory",
        description=__doc__.splitlines()[0],
    )
    sub.add_argument("--algos", default=DEFAULT_ALGORITHMS, help=f"comma-separated algorithms (default: {DEFAULT_ALGORITHMS})")
    sub.add_argument("--against", choices=["d3rlpy"], default=None, help="also time d3rlpy 2.8 on the same settings")
    sub.add_argument("--d3rlpy-python", default=sys.executable,
                     help="interpreter with d3rlpy and torch installed (default: this one; pip install offrl[bench])")
    sub.add_argument("--steps", type=int, default=1000, help="timed updates per algorithm and library (default: 1000)")
    sub.add_argument("--chunk", type=int, default=250, help="offrl updates per compiled call; timing is the best call (default: 250)")
    sub.add_argument("--threads", default="1,2", help="torch thread counts to try for d3rlpy; the best counts (default: 1,2)")
    sub.add_argument("--transitions", type=int, default=1_000_000, help="random dataset size (default: 1000000)")
    sub.add_argument("--memory-steps", type=int, default=2000, help="updates of the peak-memory training run (default: 2000)")
    sub.add_argument("--no-extras", action="store_true", help="only the per-algorithm table")
    sub.set_defaults(handler=cmd_bench_speed)


def _positive(args: argparse.Namespace) -> None:
    for name in ("steps", "chunk", "transitions", "memory_steps"):
        if getattr(args, name) <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} is {getattr(args, name)}; expected a positive integer.")
    if args.chunk > args.steps:
        raise ConfigError(f"--chunk {args.chunk} is larger than --steps {args.steps}; expected at most --steps.")
    try:
        threads = [int(count) for count in args.threads.split(",")]
    except ValueError:
        threads = [0]
    if min(threads) <= 0:
        raise ConfigError(f"--threads is {args.threads!r}; expected comma-separated positive integers such as 1,2.")


def cmd_bench_speed(args: argparse.Namespace) -> int:
    _positive(args)
    names = [name.strip().lower() for name in args.algos.split(",") if name.strip()]
    unknown = [name for name in names if name not in ALGORITHMS]
    if unknown or not names:
        raise ConfigError(f"--algos names {', '.join(unknown) or 'nothing'}; expected offline algorithms among: "
                          f"{', '.join(sorted(ALGORITHMS))}.")

    import jax

    print(f"offrl bench-speed, {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"machine: {speed.machine_description()}")
    print(f"jax {jax.__version__}, device: {jax.devices()[0]} ({jax.default_backend()})")
    square = speed.square_matmul_rate()
    print(f"float32 matmul (256x256 @ 256x256): {square / 1e9:.1f} GFLOP/s")
    dataset = speed.random_dataset(args.transitions)
    print(f"dataset: {args.transitions:,} random transitions of D4RL HalfCheetah shape (obs 17, action 6, episodes of "
          f"1000 steps); each algorithm's default networks; batch {speed.BATCH_SIZE} (DT: its windows)")
    blocks = max(1, args.steps // args.chunk)
    print(f"timing: best of {blocks} blocks of {args.chunk} updates after a warm-up, per algorithm and library"
          + (f"; d3rlpy: best of torch threads {args.threads}, `update` on batches drawn beforehand" if args.against else ""))
    print()
    header = f"{'algorithm':10} {'batch':>6} {'offrl upd/s':>11} {'compile s':>9}"
    if args.against:
        header += f" {'d3rlpy upd/s':>12} {'threads':>7} {'ratio':>6} {'+sampler':>8} {'ratio':>6}"
    header += f" {'matmul GFLOP':>12} {'XLA GFLOP':>9} {'own-size rate':>13} {'% of it':>7} {'% of 256²':>9}"
    print(header, flush=True)
    d3rlpy_version = None
    for name in names:
        ours = speed.measure_offrl(name, dataset, args.steps, args.chunk)
        batch = f"{ours['batch']}x{ours['context']}" if ours["context"] else str(ours["batch"])
        line = f"{name:10} {batch:>6} {ours['updates_per_second']:11.1f} {ours['compile_seconds']:9.1f}"
        if args.against:
            cells, version = _d3rlpy_cells(name, ours, args, blocks)
            line, d3rlpy_version = line + cells, d3rlpy_version or version
        achieved = ours["updates_per_second"] * ours["matmul_gflop"]
        line += (f" {ours['matmul_gflop']:12.3f} {ours['xla_gflop']:9.3f} {ours['matmul_rate_gflops']:9.1f} GF/s"
                 f" {100 * achieved / ours['matmul_rate_gflops']:6.0f}% {100 * achieved / (square / 1e9):8.0f}%")
        print(line, flush=True)
    print()
    print("matmul GFLOP: matmul work one update executes (a cond counts the branch taken); XLA GFLOP: XLA's static")
    print("count (both branches of a cond); own-size rate: this machine's rate for those same products in a loop;")
    print("% of it / % of 256²: offrl's achieved matmul FLOP/s as a share of that rate / of the 256x256 rate.")
    if args.against:
        print("d3rlpy upd/s: `update` alone on batches drawn beforehand; +sampler: with the time its sampler takes per")
        print("batch added back, as in d3rlpy's own training loop (offrl's rate always includes its sampling).")
    if args.against and d3rlpy_version:
        print(f"d3rlpy side: {d3rlpy_version} under {args.d3rlpy_python}")
    if not args.no_extras:
        _extras(speed, args)
    return 0


def _d3rlpy_cells(name: str, ours: dict, args: argparse.Namespace, blocks: int) -> tuple[str, str | None]:
    """The d3rlpy columns of `name`'s row, and d3rlpy's version line (None when it did not run)."""
    blank = f" {'':>7} {'':>6} {'':>8} {'':>6}"  # threads, ratio, +sampler, ratio
    missing = f" {'(none)':>12}{blank}"
    if name not in speed.D3RLPY_ALGORITHMS:
        return missing, None
    threads = [int(count) for count in args.threads.split(",")]
    answer = speed.measure_d3rlpy(args.d3rlpy_python, [name], args.transitions, args.steps, threads, blocks)
    if "error" in answer:
        print(f"  d3rlpy {name}: {answer['error']}", file=sys.stderr)
        return f" {'(error)':>12}{blank}", None
    version = f"d3rlpy {answer['d3rlpy']}, torch {answer['torch']}"
    result = answer["results"][name]
    if "skipped" in result:
        return missing, version
    ratio = ours["updates_per_second"] / result["updates_per_second"]
    # What d3rlpy's own training loop pays per update: its Python sampler draws every batch on the host.
    # offrl's updates/s already include its sampling (gathered on the device inside the fused program).
    with_sampler = 1.0 / (1.0 / result["updates_per_second"] + result["sample_seconds_per_batch"])
    end_to_end = ours["updates_per_second"] / with_sampler
    return (f" {result['updates_per_second']:12.1f} {result['threads']:>7} {ratio:5.1f}x"
            f" {with_sampler:8.1f} {end_to_end:5.1f}x"), version


def _extras(speed, args: argparse.Namespace) -> None:
    print()
    throughput = speed.evaluation_throughput()
    print(f"evaluation, 10 HalfCheetah-v5 episodes ({throughput['steps']:,} env steps), same jitted TD3+BC policy: "
          f"vectorised {throughput['vectorised']:.0f} steps/s, one env after another {throughput['one_by_one']:.0f} "
          f"steps/s ({throughput['vectorised'] / throughput['one_by_one']:.1f}x)", flush=True)
    with tempfile.TemporaryDirectory() as root:
        memory = speed.peak_training_memory(args.transitions, args.memory_steps, str(Path(root) / "run"))
    if "error" in memory:
        print(f"peak memory: training run failed: {memory['error']}")
    else:
        print(f"peak resident memory of `train_offline` (TD3+BC, {args.transitions:,} transitions, {args.memory_steps} "
              f"updates, final 10-episode evaluation), fresh process: {memory['peak_rss_mb']:.0f} MB "
              f"({memory['seconds']:.0f} s)", flush=True)
    benchmarks = Path(__file__).resolve().parents[2] / "benchmarks"
    scripts = [("load time", "load_time.py", ["--transitions", str(args.transitions), "--repeats", "2"]),
               ("seeds per program", "seeds.py", ["--algos", "td3bc,iql", "--seeds", "1,5,10",
                                                 "--chunk", str(min(args.chunk, 200)), "--transitions", str(args.transitions)])]
    for title, script, flags in scripts:
        print(f"\n{title} (benchmarks/{script}):", flush=True)
        if not (benchmarks / script).exists():
            print(f"  skipped: benchmarks/{script} is not here (it ships with the source checkout, not the package)")
            continue
        done = subprocess.run([sys.executable, script, *flags], cwd=benchmarks, capture_output=True, text=True)
        output = done.stdout.rstrip() if done.returncode == 0 else f"failed ({done.returncode}): " + \
            (done.stderr.strip().splitlines() or ["no output"])[-1]
        print("\n".join("  " + line for line in output.splitlines()), flush=True)
