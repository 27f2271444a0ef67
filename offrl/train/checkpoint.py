"""Checkpoints: algorithm state, RNG key and step, serialised with Flax and written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization

from offrl.errors import ConfigError
from offrl.atomic import atomic_write_bytes


def checkpoint_path(directory: Path, step: int) -> Path:
    return directory / f"step_{step:09d}.msgpack"


def save_checkpoint(directory: Path, step: int, state: Any, key: jax.Array) -> Path:
    payload = {
        "state": serialization.to_state_dict(jax.device_get(state)),
        "key": np.asarray(jax.random.key_data(key)) if _is_typed_key(key) else np.asarray(key),
        "step": step,
    }
    path = checkpoint_path(directory, step)
    atomic_write_bytes(path, serialization.msgpack_serialize(payload))
    return path


def _is_typed_key(key: jax.Array) -> bool:
    return jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)


def latest_checkpoint(directory: Path) -> Path | None:
    files = sorted(Path(directory).glob("step_*.msgpack"))
    return files[-1] if files else None


def load_checkpoint(path: Path, template_state: Any) -> tuple[Any, jax.Array, int]:
    try:
        payload = serialization.msgpack_restore(Path(path).read_bytes())
        state = serialization.from_state_dict(template_state, payload["state"])
    except Exception as error:
        raise ConfigError(f"Checkpoint '{path}' cannot be read ({error}); expected a checkpoint written by offrl.") from None
    return state, jax.numpy.asarray(payload["key"]), int(payload["step"])
