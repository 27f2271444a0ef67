"""The part of a run's config.json that every engine writes: the algorithm and its config, the
evaluation env, the dataset (how to load it, its metadata and fingerprint), the data transform and
the software and device the run used."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import jax

from offrl.data.dataset import Dataset
from offrl.data.fingerprint import dataset_fingerprint
from offrl.data.transforms import Normalizer
from offrl.train.configs import config_to_json
from offrl.version import __version__


def common_record(algo: ModuleType, algo_config: Any, env_id: str | None, dataset: Dataset,
                  dataset_reference: dict[str, Any] | None, normalizer: Normalizer) -> dict[str, Any]:
    return {
        "algorithm": algo.NAME,
        "algorithm_config": config_to_json(algo_config),
        "env_id": env_id,
        "dataset": dataset_reference or {"name": dataset.metadata.name, "source": dataset.metadata.source},
        "dataset_metadata": dataset.metadata.to_json(),
        "dataset_fingerprint": dataset_fingerprint(dataset),
        "spec": {"observation_dim": dataset.spec.observation_dim, "action_dim": dataset.spec.action_dim},
        "normalizer": normalizer.to_json(),
        "offrl_version": __version__,
        "jax_version": jax.__version__,
        "device": str(jax.devices()[0]),
    }
