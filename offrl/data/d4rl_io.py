"""Read D4RL-layout HDF5 files and NumPy .npz files; write .npz files.

The D4RL layout is flat arrays `observations, actions, rewards, terminals, timeouts` and,
optionally, `next_observations` and `costs` (DSRL's safe-RL layout adds the per-step cost
column); the `d4rl` package and mujoco-py are not needed. Episodes end
after every terminal or timeout (see `Dataset.from_flat`, which also handles files without
`next_observations`). A row flagged both terminal and timeout counts as terminal: the MDP ended,
so the target must not bootstrap.

Reference scores are taken only from the file itself (root attributes or a `metadata` group);
they are never guessed from a file name: D4RL's published scores belong to the registry.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from offrl.data.dataset import Dataset, DatasetMetadata
from offrl.atomic import atomic_write_bytes
from offrl.errors import DatasetError

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")
_OPTIONAL_KEYS = ("next_observations", "costs")
_KNOWN_GROUPS = ("infos", "metadata")
_EXPECTED = "observations, actions, rewards, terminals, timeouts (next_observations, costs optional)"


def to_jsonable(value: Any) -> Any:
    """`value` with NumPy scalars/arrays, sets, tuples and paths turned into JSON types."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((to_jsonable(v) for v in value), key=repr)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _check_file(path: Path, expected: str) -> None:
    if not path.exists():
        raise DatasetError(f"Dataset file '{path}' does not exist; expected {expected}.")
    if not path.is_file():
        raise DatasetError(f"Dataset path '{path}' is not a file; expected {expected}.")


def _resolve_flags(terminals: np.ndarray, timeouts: np.ndarray, provenance: dict[str, Any]) -> np.ndarray:
    """Timeouts with rows that are also terminal cleared (terminal wins: no bootstrap)."""
    terminals = np.asarray(terminals).astype(bool).reshape(-1)
    timeouts = np.asarray(timeouts).astype(bool).reshape(-1)
    if terminals.shape != timeouts.shape:
        return timeouts  # lengths are checked, with a clear message, by Dataset.from_flat
    both = terminals & timeouts
    if np.any(both):
        provenance["timeouts_cleared_on_terminal_rows"] = int(np.count_nonzero(both))
    return timeouts & ~terminals


def _check_shapes(arrays: dict[str, np.ndarray], path: Path) -> None:
    for key, values in arrays.items():
        if values.dtype.kind not in "biuf":
            raise DatasetError(
                f"Dataset file '{path}': '{key}' has dtype {values.dtype}; expected numbers."
            )
    for key in ("observations", "actions", "next_observations"):
        if key in arrays and arrays[key].ndim != 2:
            raise DatasetError(
                f"Dataset file '{path}': '{key}' has shape {arrays[key].shape}; "
                "expected a 2-D array (transitions, dimension)."
            )
    for key in ("rewards", "terminals", "timeouts", "costs"):
        if key not in arrays:
            continue
        shape = arrays[key].shape
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
            raise DatasetError(
                f"Dataset file '{path}': '{key}' has shape {shape}; expected one value per transition."
            )


def _scalar(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.size != 1:
            return None
        value = value.reshape(()).item()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    return value


def _number(value: Any, key: str, path: Path) -> float | None:
    value = _scalar(value)
    if value is None:
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        result = float("nan")
    if not np.isfinite(result):
        raise DatasetError(f"Dataset file '{path}': '{key}' is {value!r}; expected a finite number.")
    return result


# ------------------------------------------------------------------------------ D4RL HDF5
def read_d4rl_hdf5(path: str | os.PathLike, clip_actions: bool = False) -> Dataset:
    """Read a D4RL-layout HDF5 file.

    Unknown top-level keys are ignored (their names are listed in the provenance), as is the
    `infos/` group; scalar entries of `metadata/` are kept in the provenance. `ref_min_score`,
    `ref_max_score` and `env_id` are read from the root attributes or the `metadata` group when
    present. The file carries no action bounds, so `clip_actions` has nothing to clip to.
    """
    path = Path(path)
    _check_file(path, "a D4RL-layout .hdf5 file")
    try:
        is_hdf5 = h5py.is_hdf5(path)
    except Exception:  # noqa: BLE001
        is_hdf5 = False
    if not is_hdf5:
        raise DatasetError(
            f"Dataset file '{path}' is not an HDF5 file; expected a D4RL-layout HDF5 file with "
            f"datasets {_EXPECTED}."
        )
    try:
        with h5py.File(path, "r") as file:
            arrays = {key: _read_hdf5_array(file, key, path) for key in REQUIRED_KEYS}
            for key in _OPTIONAL_KEYS:
                if key in file:
                    arrays[key] = _read_hdf5_array(file, key, path)
            info = _hdf5_metadata(file)
            ignored = sorted(k for k in file.keys() if k not in (*REQUIRED_KEYS, *_OPTIONAL_KEYS, *_KNOWN_GROUPS))
    except DatasetError:
        raise
    except Exception as error:  # noqa: BLE001 - h5py raises OSError, KeyError, RuntimeError...
        raise DatasetError(
            f"Dataset file '{path}' could not be read as HDF5 ({type(error).__name__}: {error}); "
            "expected an intact D4RL-layout HDF5 file."
        ) from error
    _check_shapes(arrays, path)

    provenance: dict[str, Any] = {"format": "dsrl-hdf5" if "costs" in arrays else "d4rl-hdf5",
                                  "has_next_observations": "next_observations" in arrays}
    if info["d4rl_metadata"]:
        provenance["d4rl_metadata"] = info["d4rl_metadata"]
    if ignored:
        provenance["ignored_keys"] = ignored
    metadata = DatasetMetadata(
        name=path.stem,
        env_id=info["env_id"],
        ref_min_score=_number(info["ref_min_score"], "ref_min_score", path),
        ref_max_score=_number(info["ref_max_score"], "ref_max_score", path),
        source=str(path),
        provenance=provenance,
    )
    return _from_arrays(arrays, metadata, clip_actions)


def _read_hdf5_array(file: h5py.File, key: str, path: Path) -> np.ndarray:
    item = file.get(key)
    if item is None:
        raise DatasetError(
            f"Dataset file '{path}' has no dataset '{key}'; expected D4RL keys {_EXPECTED}."
        )
    if not isinstance(item, h5py.Dataset):
        raise DatasetError(f"Dataset file '{path}': '{key}' is an HDF5 group; expected an array dataset.")
    return np.asarray(item[()])


def _hdf5_metadata(file: h5py.File) -> dict[str, Any]:
    """ref scores, env id and the scalar entries of the `metadata` group (not nested groups)."""
    found: dict[str, Any] = {"ref_min_score": None, "ref_max_score": None, "env_id": None}
    extra: dict[str, Any] = {}
    sources: list[dict[str, Any]] = [dict(file.attrs)]
    group = file.get("metadata")
    if isinstance(group, h5py.Group):
        entries = dict(group.attrs)
        for key, item in group.items():
            if isinstance(item, h5py.Dataset) and item.size == 1 and item.dtype.kind in "biufSUO":
                entries[key] = item[()]
        sources.append(entries)
        for key, value in entries.items():
            value = _scalar(value)
            if isinstance(value, (bool, int, float, str)):
                extra[key] = value
    for entries in sources:
        for key in ("ref_min_score", "ref_max_score"):
            if key in entries:
                found[key] = entries[key]
        for key in ("env_id", "env_name"):
            value = _scalar(entries.get(key))
            if isinstance(value, str) and value and found["env_id"] is None:
                found["env_id"] = value
    found["d4rl_metadata"] = to_jsonable(extra)
    return found


def _from_arrays(arrays: dict[str, np.ndarray], metadata: DatasetMetadata, clip_actions: bool) -> Dataset:
    provenance = metadata.provenance
    timeouts = _resolve_flags(arrays["terminals"], arrays["timeouts"], provenance)
    actions = arrays["actions"]
    low, high = metadata.action_low, metadata.action_high
    if clip_actions and low is not None and high is not None:
        clipped = np.clip(actions, low, high)
        provenance["clipped_action_values"] = int(np.count_nonzero(clipped != actions))
        actions = clipped
    if "episode_starts" in arrays:
        return Dataset(
            observations=arrays["observations"],
            actions=actions,
            rewards=arrays["rewards"].reshape(-1),
            next_observations=arrays["next_observations"],
            terminals=arrays["terminals"].reshape(-1),
            timeouts=timeouts.reshape(-1),
            episode_starts=arrays["episode_starts"],
            metadata=metadata,
            costs=None if "costs" not in arrays else arrays["costs"].reshape(-1),
        )
    original = len(arrays["observations"])
    dataset = Dataset.from_flat(
        observations=arrays["observations"],
        actions=actions,
        rewards=arrays["rewards"],
        terminals=arrays["terminals"],
        timeouts=timeouts,
        next_observations=arrays.get("next_observations"),
        metadata=metadata,
        costs=arrays.get("costs"),
    )
    if "next_observations" not in arrays:
        provenance["rows_dropped_without_next_observation"] = original - dataset.num_transitions
    return dataset


# ------------------------------------------------------------------------------ NumPy npz
def read_npz(path: str | os.PathLike, clip_actions: bool = False) -> Dataset:
    """Read a NumPy .npz with the D4RL keys (plus optional `episode_starts`, metadata keys).

    Optional keys: `next_observations`; `costs` (one per transition); `episode_starts` (needs `next_observations`: the episode
    boundaries are then taken as given instead of from the flags); scalars `ref_min_score`,
    `ref_max_score`, `env_id`, `name`; arrays `action_low`, `action_high` (actions are checked
    against them, or clipped into them with `clip_actions`); `provenance_json`.
    """
    path = Path(path)
    _check_file(path, "a NumPy .npz file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise DatasetError(f"Dataset file '{path}' is a single .npy array; expected a .npz archive.")
            keys = set(archive.files)
            for key in REQUIRED_KEYS:
                if key not in keys:
                    raise DatasetError(
                        f"Dataset file '{path}' has no array '{key}'; expected keys {_EXPECTED}."
                    )
            arrays = {key: np.asarray(archive[key]) for key in (*REQUIRED_KEYS, *_OPTIONAL_KEYS, "episode_starts") if key in keys}
            extra = {
                key: np.asarray(archive[key])
                for key in ("ref_min_score", "ref_max_score", "env_id", "name", "action_low", "action_high", "provenance_json")
                if key in keys
            }
            ignored = sorted(keys - set(arrays) - set(extra))
    except DatasetError:
        raise
    except Exception as error:  # noqa: BLE001 - np.load raises many types on bad files
        raise DatasetError(
            f"Dataset file '{path}' could not be read as a NumPy .npz archive "
            f"({type(error).__name__}: {error}); expected an .npz file with keys {_EXPECTED}."
        ) from error
    if "episode_starts" in arrays and "next_observations" not in arrays:
        raise DatasetError(
            f"Dataset file '{path}' has 'episode_starts' but no 'next_observations'; "
            "expected both (episode boundaries given explicitly need explicit next observations)."
        )
    if "episode_starts" in arrays and arrays["episode_starts"].dtype.kind not in "iu":
        raise DatasetError(f"Dataset file '{path}': 'episode_starts' has dtype {arrays['episode_starts'].dtype}; expected integers.")
    _check_shapes({k: v for k, v in arrays.items() if k != "episode_starts"}, path)

    provenance: dict[str, Any] = {}
    if "provenance_json" in extra:
        try:
            loaded = json.loads(str(_scalar(extra["provenance_json"])))
        except ValueError:
            raise DatasetError(f"Dataset file '{path}': 'provenance_json' is not valid JSON; expected a JSON object.") from None
        if isinstance(loaded, dict):
            provenance.update(loaded)
    else:
        provenance["format"] = "npz"
    if ignored:
        provenance["ignored_keys"] = ignored
    bounds = []
    for key in ("action_low", "action_high"):
        value = extra.get(key)
        if value is not None and (value.dtype.kind not in "biuf" or value.ndim > 1):
            raise DatasetError(f"Dataset file '{path}': '{key}' has dtype {value.dtype} and shape {value.shape}; expected a 1-D array of numbers.")
        if value is not None and value.size not in (1, arrays["actions"].shape[1]):
            raise DatasetError(
                f"Dataset file '{path}': '{key}' has {value.size} values but actions have "
                f"{arrays['actions'].shape[1]} dimensions; expected one bound per dimension."
            )
        bounds.append(None if value is None else value.astype(np.float32))
    env_id = _scalar(extra.get("env_id"))
    name = _scalar(extra.get("name"))
    metadata = DatasetMetadata(
        name=name if isinstance(name, str) and name else path.stem,
        env_id=env_id if isinstance(env_id, str) and env_id else None,
        ref_min_score=_number(extra.get("ref_min_score"), "ref_min_score", path),
        ref_max_score=_number(extra.get("ref_max_score"), "ref_max_score", path),
        action_low=bounds[0],
        action_high=bounds[1],
        source=str(path),
        provenance=provenance,
    )
    return _from_arrays(arrays, metadata, clip_actions)


def write_npz(dataset: Dataset, path: str | os.PathLike) -> Path:
    """Write `dataset` (arrays, episode starts and metadata) to an .npz file; return its path.

    The file is written to a temporary file in the same directory and renamed into place, so a
    reader sees the old file or the new one, never half of one. `read_npz` reads it back exactly.
    """
    path = Path(path)
    meta = dataset.metadata
    payload: dict[str, np.ndarray] = {
        "observations": dataset.observations,
        "actions": dataset.actions,
        "rewards": dataset.rewards,
        "next_observations": dataset.next_observations,
        "terminals": dataset.terminals,
        "timeouts": dataset.timeouts,
        "episode_starts": dataset.episode_starts,
    }
    if dataset.costs is not None:
        payload["costs"] = dataset.costs
    if meta.ref_min_score is not None:
        payload["ref_min_score"] = np.asarray(meta.ref_min_score, dtype=np.float64)
    if meta.ref_max_score is not None:
        payload["ref_max_score"] = np.asarray(meta.ref_max_score, dtype=np.float64)
    if meta.env_id is not None:
        payload["env_id"] = np.asarray(str(meta.env_id))
    if meta.name is not None:
        payload["name"] = np.asarray(str(meta.name))
    if meta.action_low is not None and meta.action_high is not None:
        payload["action_low"] = np.asarray(meta.action_low, dtype=np.float32)
        payload["action_high"] = np.asarray(meta.action_high, dtype=np.float32)
    payload["provenance_json"] = np.asarray(json.dumps(to_jsonable(meta.provenance)))

    buffer = io.BytesIO()
    np.savez(buffer, **payload)
    atomic_write_bytes(path, buffer.getvalue())
    return path
