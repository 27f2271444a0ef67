"""Many seeds of one configuration: `train_seeds` writes RUN_DIR/seed_<s>/ for each seed.

Each seed's directory is an ordinary run directory (config.json records its own seed), so
reports, `load_policy` and `--resume` treat it like any other run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

from offrl.data.dataset import Dataset
from offrl.train.offline import TrainConfig, TrainResult, train_offline


def seed_run_dir(run_dir: str | Path, seed: int) -> Path:
    return Path(run_dir) / f"seed_{seed}"


def train_seeds(
    algo: ModuleType,
    algo_config: Any,
    dataset: Dataset,
    train: TrainConfig,
    run_dir: str | Path,
    seeds: Sequence[int],
    dataset_reference: dict[str, Any] | None = None,
    progress: bool = True,
) -> list[TrainResult]:
    """Train one agent per seed in `seeds`; returns their results in the same order."""
    return [
        train_offline(algo, algo_config, dataset, dataclasses.replace(train, seed=seed), seed_run_dir(run_dir, seed),
                      dataset_reference=dataset_reference, progress=progress)
        for seed in seeds
    ]
