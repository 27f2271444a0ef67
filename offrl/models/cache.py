"""Saved dynamics models, and a cache keyed by dataset fingerprint and config.

A model directory holds `model.msgpack` (parameters, input standardisation, elites) and
`meta.json` (the dataset fingerprint, the DynamicsConfig, the action bounds the actions were
scaled with, held-out errors and, with a terminal head, its held-out accuracy); `meta.json` is
written last, so a directory without it is incomplete and never read. Every algorithm and seed
trained on one dataset with one config finds the same directory, `<cache_dir>/<fingerprint[:16]>-<config hash[:12]>`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import jax.numpy as jnp
import numpy as np
from flax import serialization

from offrl.atomic import atomic_write_bytes, atomic_write_json
from offrl.errors import ConfigError
from offrl.models.ensemble import DynamicsModel
from offrl.models.training import DynamicsConfig, TrainedDynamics

MODEL_FILE, META_FILE = "model.msgpack", "meta.json"


def config_json(config: DynamicsConfig) -> dict[str, Any]:
    """The config as meta.json and the cache key hold it. The terminal head's fields appear only with
    the head, so models cached before the head existed keep their keys, and one with a head never
    shares a key with one without."""
    fields = {name: list(value) if isinstance(value, tuple) else value for name, value in dataclasses.asdict(config).items()}
    if not config.terminal_head:
        for name in ("terminal_head", "terminal_positive_weight"):
            del fields[name]
    return fields


def cache_key(fingerprint: dict[str, Any], config: DynamicsConfig, action_scaling: dict[str, Any]) -> str:
    settings = json.dumps({"config": config_json(config), "action_scaling": action_scaling}, sort_keys=True)
    return f"{fingerprint['sha256'][:16]}-{hashlib.sha256(settings.encode()).hexdigest()[:12]}"


def save_model(directory: str | Path, trained: TrainedDynamics, fingerprint: dict[str, Any], config: DynamicsConfig,
               action_scaling: dict[str, Any], dataset_name: str | None = None) -> Path:
    directory = Path(directory)
    model = trained.model
    arrays = {"params": model.params, "input_mean": np.asarray(model.input_mean), "input_std": np.asarray(model.input_std),
              "elites": np.asarray(model.elites)}
    (directory / META_FILE).unlink(missing_ok=True)  # incomplete until meta.json is back
    atomic_write_bytes(directory / MODEL_FILE, serialization.msgpack_serialize(serialization.to_state_dict(arrays)))
    atomic_write_json(directory / META_FILE, {
        "dataset_fingerprint": fingerprint, "dataset": dataset_name, "config": config_json(config),
        "action_scaling": action_scaling, "observation_dim": model.observation_dim,
        "holdout_mse": trained.holdout_mse.tolist(), "elites": np.asarray(model.elites).tolist(),
        "epochs": trained.epochs, "train_seconds": trained.seconds, "num_train": trained.num_train,
        "num_holdout": trained.num_holdout, "holdout_terminal": trained.holdout_terminal,
    })
    return directory


def read_meta(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / META_FILE
    if not path.is_file() or not (Path(directory) / MODEL_FILE).is_file():
        raise ConfigError(f"'{directory}' holds no complete dynamics model; expected {MODEL_FILE} and {META_FILE} "
                          "written by `offrl models train`.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ConfigError(f"'{path}' is not valid JSON ({error.msg}); expected the meta.json of a dynamics model.") from None


def load_model(directory: str | Path, fingerprint: dict[str, Any]) -> tuple[DynamicsModel, dict[str, Any]]:
    """The model in `directory`, refused unless it was trained on the dataset with `fingerprint`."""
    meta = read_meta(directory)
    trained_on = meta.get("dataset_fingerprint", {}).get("sha256", "?")
    if trained_on != fingerprint["sha256"]:
        raise ConfigError(
            f"The dynamics model in '{directory}' was trained on another dataset (fingerprint {trained_on[:12]}, "
            f"{meta.get('dataset_fingerprint', {}).get('num_transitions', '?')} transitions); expected one trained on "
            f"this dataset ({fingerprint['sha256'][:12]}, {fingerprint['num_transitions']} transitions)."
        )
    config = DynamicsConfig(**{name: tuple(value) if isinstance(value, list) else value for name, value in meta["config"].items()})
    state = serialization.msgpack_restore((Path(directory) / MODEL_FILE).read_bytes())
    params = _as_jax(state["params"])
    model = DynamicsModel(params=params, input_mean=jnp.asarray(state["input_mean"]), input_std=jnp.asarray(state["input_std"]),
                          elites=jnp.asarray(state["elites"], jnp.int32), observation_dim=int(meta["observation_dim"]),
                          hidden_dims=tuple(config.hidden_dims), num_models=config.num_models,
                          terminal_head=config.terminal_head)
    return model, {**meta, "directory": str(directory)}


def _as_jax(tree):
    if isinstance(tree, dict):
        return {key: _as_jax(value) for key, value in tree.items()}
    return jnp.asarray(tree)


def cached_model(cache_dir: str | Path, fingerprint: dict[str, Any], config: DynamicsConfig, action_scaling: dict[str, Any],
                 train: Callable[[], TrainedDynamics], retrain: bool = False,
                 dataset_name: str | None = None) -> tuple[DynamicsModel, dict[str, Any], bool]:
    """(model, meta, reused): the cached model for this dataset and config, else `train()` and save it."""
    directory = Path(cache_dir) / cache_key(fingerprint, config, action_scaling)
    if not retrain and (directory / META_FILE).is_file():
        model, meta = load_model(directory, fingerprint)
        return model, meta, True
    trained = train()
    save_model(directory, trained, fingerprint, config, action_scaling, dataset_name)
    model, meta = load_model(directory, fingerprint)
    return model, meta, False
