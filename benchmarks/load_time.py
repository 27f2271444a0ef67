"""How long `offrl.data.load.load_dataset` takes to read a 1M-transition Minari dataset.

Makes a random HalfCheetah-shaped dataset (17-D observations, 6-D actions, 1,000 episodes of
1,000 steps, like D4RL's halfcheetah-*-v2 files) in a temporary directory with `write_minari`,
then times `load_dataset` on it. Prints seconds and the machine. Usage:

    python benchmarks/load_time.py [--transitions 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np

from offrl.data.dataset import Dataset, DatasetMetadata
from offrl.data.load import load_dataset
from offrl.data.minari_io import write_minari


def halfcheetah_shaped(transitions: int, episode_length: int = 1_000, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    episodes = max(1, transitions // episode_length)
    observations = rng.normal(size=(episodes, episode_length + 1, 17)).astype(np.float32)
    timeouts = np.zeros((episodes, episode_length), bool)
    timeouts[:, -1] = True
    n = episodes * episode_length
    return Dataset(
        observations=observations[:, :-1].reshape(n, 17),
        next_observations=observations[:, 1:].reshape(n, 17),
        actions=rng.uniform(-1, 1, size=(n, 6)).astype(np.float32),
        rewards=rng.normal(size=n).astype(np.float32),
        terminals=np.zeros(n, bool),
        timeouts=timeouts.reshape(n),
        episode_starts=np.arange(episodes) * episode_length,
        metadata=DatasetMetadata(name="load-time", env_id="HalfCheetah-v5", ref_min_score=-280.178953,
                                 ref_max_score=12135.0, action_low=-np.ones(6, np.float32),
                                 action_high=np.ones(6, np.float32)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transitions", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    dataset = halfcheetah_shaped(args.transitions)
    with tempfile.TemporaryDirectory() as root:
        started = time.perf_counter()
        path = write_minari(dataset, "load-time-v0", root=root)
        write_seconds = time.perf_counter() - started
        size_mb = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            loaded = load_dataset(path)
            times.append(time.perf_counter() - started)
        assert loaded.num_transitions == dataset.num_transitions
    print(f"transitions: {dataset.num_transitions:,} in {dataset.num_episodes} episodes; on disk {size_mb:.0f} MB")
    print(f"write_minari: {write_seconds:.1f} s")
    print(f"load_dataset: best {min(times):.2f} s, runs {', '.join(f'{t:.2f}' for t in times)} s")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{platform.system()} {platform.release()}, Python {platform.python_version()}")
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
        print(f"cpu: {model}")
    except (OSError, StopIteration):
        pass


if __name__ == "__main__":
    main()
