"""Checkpoints: algorithm state, RNG key, step and engine state, verified and written atomically.

A checkpoint file is a header line `OFFRL-CHECKPOINT-1`, a line with the SHA-256 of the payload
(hex), then the payload: a Flax msgpack of `{"state", "key", "step", "engine"}`. The whole file
is written to a temporary name and renamed into place (`offrl.atomic`), so a kill during the
write leaves the previous checkpoints untouched; the checksum catches what the rename cannot
(a disk that truncates or flips bytes, a file copied half-way). `engine` holds what the
engine needs to continue identically (the evaluation history so far, the training time).
"""

from __future__ import annotations

import hashlib
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization

from offrl.atomic import atomic_write_bytes
from offrl.errors import ConfigError

MAGIC = b"OFFRL-CHECKPOINT-1\n"
_DIGEST_LINE = 64 + 1  # hex SHA-256 and a newline
_NAME = re.compile(r"^step_(\d{9,})\.msgpack$")


class CorruptCheckpointError(ConfigError):
    """A checkpoint file is truncated, altered or not an offrl checkpoint."""


@dataclass
class Checkpoint:
    path: Path
    step: int
    state: Any
    key: jax.Array
    engine: dict[str, Any] = field(default_factory=dict)


def checkpoint_path(directory: Path, step: int) -> Path:
    return Path(directory) / f"step_{step:09d}.msgpack"


def encode_checkpoint(step: int, state: Any, key: jax.Array, engine: dict[str, Any] | None = None) -> bytes:
    payload = serialization.msgpack_serialize({
        "state": serialization.to_state_dict(jax.device_get(state)),
        "key": np.asarray(jax.random.key_data(key)) if _is_typed_key(key) else np.asarray(key),
        "step": int(step),
        "engine": dict(engine or {}),
    })
    return MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload


def save_checkpoint(
    directory: Path, step: int, state: Any, key: jax.Array, engine: dict[str, Any] | None = None
) -> Path:
    path = checkpoint_path(directory, step)
    atomic_write_bytes(path, encode_checkpoint(step, state, key, engine))
    return path


def _is_typed_key(key: jax.Array) -> bool:
    return jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)


def checkpoint_files(directory: Path) -> list[Path]:
    """Checkpoint files (not temporary ones), oldest step first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name)) and p.is_file()]
    return [path for _, path in sorted(found)]


def latest_checkpoint(directory: Path) -> Path | None:
    files = checkpoint_files(directory)
    return files[-1] if files else None


def read_payload(path: Path) -> dict[str, Any]:
    """The verified payload of a checkpoint file; CorruptCheckpointError if it does not verify."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CorruptCheckpointError(f"Checkpoint '{path}' cannot be read ({error.strerror}).") from None
    if not data.startswith(MAGIC):
        raise CorruptCheckpointError(
            f"Checkpoint '{path}' has no offrl checkpoint header ({len(data)} bytes); "
            "expected a file written by offrl."
        )
    digest, payload = data[len(MAGIC):len(MAGIC) + _DIGEST_LINE], data[len(MAGIC) + _DIGEST_LINE:]
    if hashlib.sha256(payload).hexdigest().encode() + b"\n" != digest:
        raise CorruptCheckpointError(
            f"Checkpoint '{path}' is corrupt or truncated: its SHA-256 does not match the one "
            f"recorded in its header ({len(data)} bytes on disk)."
        )
    try:
        result = serialization.msgpack_restore(payload)
        int(result["step"]), result["state"], result["key"]
    except Exception as error:  # noqa: BLE001 - a verified payload that does not decode
        raise CorruptCheckpointError(f"Checkpoint '{path}' cannot be decoded ({error}).") from None
    return result


def load_checkpoint_full(path: Path, template_state: Any) -> Checkpoint:
    payload = read_payload(path)
    try:
        state = serialization.from_state_dict(template_state, payload["state"])
        state = _match_template(template_state, state)
    except Exception as error:  # noqa: BLE001 - wrong structure: another algorithm or config
        raise ConfigError(
            f"Checkpoint '{path}' does not fit this algorithm and configuration ({error}); "
            "expected a checkpoint of the same run."
        ) from None
    return Checkpoint(
        path=Path(path),
        step=int(payload["step"]),
        state=state,
        key=jax.numpy.asarray(payload["key"]),
        engine=dict(payload.get("engine") or {}),
    )


def _match_template(template: Any, state: Any) -> Any:
    """`state` with each leaf shaped and typed like a freshly initialised state's, so that the
    program compiled for a fresh state runs a restored one unchanged (no retrace: a Python
    scalar in the template, such as a step counter, stays a Python scalar)."""

    def restore(path, expected, actual):
        if np.shape(expected) != np.shape(actual):
            raise ValueError(f"{jax.tree_util.keystr(path)} has shape {np.shape(actual)}, expected {np.shape(expected)}")
        if isinstance(expected, (bool, int, float)):
            return type(expected)(np.asarray(actual).item())
        if getattr(expected, "weak_type", False) and np.ndim(actual) == 0:
            return jax.numpy.asarray(np.asarray(actual).item())
        return np.asarray(actual, dtype=np.asarray(expected).dtype if not hasattr(expected, "dtype") else expected.dtype)

    return jax.tree_util.tree_map_with_path(restore, template, state)


def load_checkpoint(path: Path, template_state: Any) -> tuple[Any, jax.Array, int]:
    checkpoint = load_checkpoint_full(path, template_state)
    return checkpoint.state, checkpoint.key, checkpoint.step


def latest_valid_checkpoint(directory: Path, template_state: Any, quarantine: bool = False) -> Checkpoint | None:
    """The newest checkpoint that verifies, warning (naming the file) about each newer one that
    does not; with `quarantine`, those are renamed to `*.corrupt` so nothing picks them later.
    None if the directory has no checkpoint file at all; ConfigError if it has some but none is good.
    """
    files = checkpoint_files(directory)
    bad: list[str] = []
    for path in reversed(files):
        try:
            return load_checkpoint_full(path, template_state)
        except CorruptCheckpointError as error:
            bad.append(path.name)
            warnings.warn(f"{error} Falling back to the previous checkpoint.", stacklevel=2)
            if quarantine:
                path.rename(path.with_name(path.name + ".corrupt"))
    if bad:
        raise ConfigError(
            f"No valid checkpoint in '{directory}': {', '.join(bad)} failed verification; "
            "expected at least one intact checkpoint."
        )
    return None
