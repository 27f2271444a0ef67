"""Offline-to-online fine-tuning benchmark: score before -> after N online steps, per method and seed.

Each method except RLPD is first trained offline on the dataset (`train_offline`, its default
Config), then fine-tuned online by `offrl.train.finetune.finetune` with the method's own FINETUNE
settings; RLPD is trained online from scratch with the dataset as prior data. Scores are the
dataset's normalised scores (its own reference returns), evaluated with the deterministic policy
over `--eval-episodes` episodes: "before" at online step 0, "after" at step N, "best" over the
evaluations in between. Regret is CORL's (mean over the online evaluations of 1 - score/100,
clipped to [0, 1]). Wall times are per run, in seconds, compile included, on this machine.

    python benchmarks/finetune.py [--methods iql,cql,rebrac,spot,awac,calql,rlpd] [--seeds 0,1,2]
        [--dataset default] [--offline-steps 30000] [--online-steps 10000] [--eval-every 2500]
        [--rlpd-utd 20] [--rlpd-warmup 5000] [--small] [--data-dir DIR] [--preset D4RL_NAME]
        [--offline-from GLOB] [--out runs/bench-finetune] [--markdown FILE]

Finished runs under `--out` are reused, so an interrupted benchmark continues where it stopped.
`--small` uses 64x64 networks (and a 64x64 VAE for SPOT) for a quick check of the pipeline; the
default is each method's own D4RL-size configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

import jax
import numpy as np

from offrl.algos import get_algorithm
from offrl.data.registry import resolve_dataset
from offrl.train.finetune import FinetuneConfig, finetune, train_with_prior_data
from offrl.train.offline import TrainConfig, train_offline
from offrl.train.presets import load_presets

METHODS = ("iql", "cql", "rebrac", "spot", "awac", "calql", "rlpd")


def offline_config(algo, offline_steps: int, small: bool, preset: str | None = None):
    changes = {}
    if preset:
        # The reference's per-dataset setting (offrl presets ALGO), config fields only: the budget is --offline-steps.
        found = load_presets(algo.NAME).get(preset)
        changes.update(found.config if found else {})
    if small:
        changes["hidden_dims"] = (64, 64)
        if algo.NAME == "spot":
            changes["vae_hidden_dims"] = (64, 64)
    if algo.NAME == "spot":
        # SPOT pretrains its VAE (100k updates by default) before the offline engine's counted
        # TD3 steps: a VAE budget of half the offline steps keeps the whole run affordable.
        changes["vae_steps"] = offline_steps // 2
    if algo.NAME == "iql":
        changes["actor_decay_steps"] = offline_steps  # the cosine schedule spans the offline run, as in the paper
    return algo.Config(**changes)


def finished(run: Path) -> dict | None:
    summary = run / "summary.json"
    if summary.exists():
        record = json.loads(summary.read_text())
        if record.get("status") == "finished":
            return record
    return None


def clear_unfinished(run: Path) -> None:
    """An online run stopped before its end has no checkpoint to resume (one is written at the end): start it again."""
    if run.exists() and finished(run) is None:
        print(f"{run}: unfinished, restarting it", flush=True)
        shutil.rmtree(run)


def run_one(method: str, seed: int, args, dataset, out: Path) -> dict:
    algo = get_algorithm(method)
    base = out / method / f"seed{seed}"
    rlpd = method == "rlpd"
    online_config = FinetuneConfig(online_steps=args.online_steps, eval_every=args.eval_every, eval_episodes=args.eval_episodes,
                                   checkpoint_every=args.online_steps, seed=seed, utd=args.rlpd_utd if rlpd else None,
                                   warmup_steps=args.rlpd_warmup if rlpd else None)
    offline_seconds = 0.0
    if rlpd:
        config = algo.Config(**({"hidden_dims": (64, 64)} if args.small else {}), actor_update_every=args.rlpd_utd)
        summary = finished(base / "online")
        if summary is None:
            clear_unfinished(base / "online")
            summary = train_with_prior_data(algo, config, dataset, online_config, base / "online",
                                            dataset_reference={"argument": args.dataset}, progress=False).summary
    else:
        offline_dir = base / "offline"
        if args.offline_from:
            # An existing offline run (e.g. a suite-table cell's seed), fine-tuned as it is.
            matches = sorted(Path().glob(args.offline_from.format(method=method, seed=seed)))
            if len(matches) != 1 or finished(matches[0]) is None:
                raise SystemExit(f"--offline-from matches {len(matches)} finished runs for {method} seed {seed}; expected one.")
            offline_dir = matches[0]
        offline = finished(offline_dir)
        if offline is None:
            started = time.perf_counter()
            train = TrainConfig(steps=args.offline_steps, eval_every=args.offline_steps, log_every=min(1_000, args.offline_steps),
                                checkpoint_every=args.offline_steps, eval_episodes=args.eval_episodes, seed=seed)
            config = offline_config(algo, args.offline_steps, args.small, args.preset)
            offline = train_offline(algo, config, dataset, train, base / "offline",
                                    dataset_reference={"argument": args.dataset}, progress=False).summary
            offline["wall_seconds"] = time.perf_counter() - started
            (base / "offline" / "bench.json").write_text(json.dumps({"wall_seconds": offline["wall_seconds"]}))
        bench = offline_dir / "bench.json"
        offline_seconds = json.loads(bench.read_text())["wall_seconds"] if bench.exists() else offline.get("train_seconds", float("nan"))
        summary = finished(base / "online")
        if summary is None:
            clear_unfinished(base / "online")
            summary = finetune(offline_dir, online_config, base / "online", dataset=dataset, progress=False).summary
    print(f"{method:7s} seed {seed}: {summary['score_before']:6.1f} -> {summary['score_after']:6.1f} "
          f"(best {summary['best_score']:.1f}, regret {summary['regret']:.3f}), offline {offline_seconds:.0f} s, "
          f"online {summary['wall_seconds']:.0f} s", flush=True)
    return {"method": method, "seed": seed, "offline_seconds": offline_seconds, **summary}


def mean_std(values) -> str:
    values = np.asarray([v for v in values if v is not None], float)
    if len(values) == 0:
        return "-"
    return f"{values.mean():.1f} ± {values.std():.1f}"


def table(results: list[dict], args) -> str:
    lines = [
        f"| method | seeds | score before | score after {args.online_steps:,} steps | best | regret | offline s/run | online s/run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for method in args.methods:
        rows = [r for r in results if r["method"] == method]
        if not rows:
            continue
        regret = np.mean([r["regret"] for r in rows if r["regret"] is not None])
        offline = "-" if method == "rlpd" else f"{np.mean([r['offline_seconds'] for r in rows]):.0f}"
        lines.append(
            f"| {method} | {len(rows)} | {mean_std(r['score_before'] for r in rows)} | {mean_std(r['score_after'] for r in rows)} "
            f"| {mean_std(r['best_score'] for r in rows)} | {regret:.3f} | {offline} | {np.mean([r['wall_seconds'] for r in rows]):.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--dataset", default="default")
    parser.add_argument("--offline-steps", type=int, default=30_000)
    parser.add_argument("--online-steps", type=int, default=10_000)
    parser.add_argument("--eval-every", type=int, default=2_500)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--rlpd-utd", type=int, default=20, help="RLPD's updates per env step (reference: 20)")
    parser.add_argument("--rlpd-warmup", type=int, default=5_000, help="RLPD's uniform-random steps first (reference: 5000)")
    parser.add_argument("--data-dir", default=None, help="offrl data directory holding --dataset")
    parser.add_argument("--preset", default=None, help="apply each method's preset of this D4RL dataset to its offline "
                        "config (e.g. hopper-medium-replay-v2; methods without one keep their defaults)")
    parser.add_argument("--offline-from", default=None, help="fine-tune existing offline runs instead of training them: a glob "
                        "relative to the working directory with {method} and {seed}, e.g. "
                        "'benchmarks/results/suite-table/hopper-medium-replay/{method}/sweep/trials/*/seed_{seed}'")
    parser.add_argument("--small", action="store_true", help="64x64 networks: a quick check of the pipeline")
    parser.add_argument("--out", default="runs/bench-finetune")
    parser.add_argument("--markdown", default=None, help="also write the table to this file")
    args = parser.parse_args()
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    seeds = [int(s) for s in args.seeds.split(",")]
    dataset = resolve_dataset(args.dataset, args.data_dir)
    print(f"{dataset!r}; JAX {jax.__version__} on {jax.devices()[0]}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    started = time.perf_counter()
    results = [run_one(method, seed, args, dataset, Path(args.out)) for method in args.methods for seed in seeds]
    offline_text = f"offline runs {args.offline_from}" if args.offline_from else f"{args.offline_steps:,} offline updates"
    text = (f"{dataset.metadata.name}: {offline_text} (not RLPD), {args.online_steps:,} online steps "
            f"(RLPD: {args.rlpd_warmup:,} random first, UTD {args.rlpd_utd}), {'64x64 networks' if args.small else 'default networks'}"
            f"{f', presets of {args.preset}' if args.preset else ''}, "
            f"{args.eval_episodes} evaluation episodes\n\n"
            + table(results, args))
    print(text)
    print(f"total wall time {time.perf_counter() - started:.0f} s")
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")


if __name__ == "__main__":
    main()
