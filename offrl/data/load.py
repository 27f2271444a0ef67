"""Load a dataset from a path, whatever its format: Minari directory, D4RL HDF5 or .npz."""

from __future__ import annotations

import os
from pathlib import Path

import h5py

from offrl.data.d4rl_io import read_d4rl_hdf5, read_npz
from offrl.data.dataset import Dataset
from offrl.data.tabular_io import TABULAR_SUFFIXES
from offrl.errors import DatasetError

_HDF5_SUFFIXES = (".hdf5", ".h5")
_ZIP_MAGIC = b"PK\x03\x04"


def load_dataset(path: str | os.PathLike, clip_actions: bool = False) -> Dataset:
    """Read the dataset at `path`, choosing the reader by what the path is.

    A directory holding `data/main_data.hdf5` or `data/metadata.json` is a Minari dataset; a
    `.hdf5`/`.h5` file is D4RL-layout HDF5; a `.npz` file is a NumPy archive. A file with
    another extension is read as HDF5 or .npz if its content says so. `clip_actions` clips
    actions into the dataset's action bounds where the file records them.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetError(
            f"Dataset file '{path}' does not exist; expected a Minari dataset directory, "
            "a D4RL .hdf5 file or a .npz file."
        )
    if path.is_dir():
        if (path / "data" / "main_data.hdf5").exists() or (path / "data" / "metadata.json").exists():
            from offrl.data.minari_io import read_minari  # imports minari: only when needed

            return read_minari(path, clip_actions=clip_actions)
        raise DatasetError(
            f"Directory '{path}' is not a Minari dataset directory; expected it to contain "
            "'data/metadata.json' (or give a D4RL .hdf5 file or a .npz file)."
        )
    suffix = path.suffix.lower()
    if suffix in _HDF5_SUFFIXES:
        return read_d4rl_hdf5(path, clip_actions=clip_actions)
    if suffix == ".npz":
        return read_npz(path, clip_actions=clip_actions)
    if suffix in TABULAR_SUFFIXES:  # a table needs a column mapping, which only `import` takes
        raise DatasetError(
            f"Dataset file '{path}' is a tabular log, which needs a column mapping; expected it imported first with "
            f"`offrl datasets import {path} --obs-cols ... --action-cols ... --reward-col ...` (or --mapping FILE.yaml), "
            "then the imported name or .npz as --dataset."
        )
    if _is_hdf5(path):
        return read_d4rl_hdf5(path, clip_actions=clip_actions)
    if _starts_with(path, _ZIP_MAGIC):
        return read_npz(path, clip_actions=clip_actions)
    raise DatasetError(
        f"Dataset file '{path}' has extension '{path.suffix}' and is neither HDF5 nor a .npz "
        "archive; expected a Minari dataset directory, a D4RL .hdf5 file or a .npz file."
    )


def _is_hdf5(path: Path) -> bool:
    try:
        return bool(h5py.is_hdf5(path))
    except Exception:  # noqa: BLE001 - unreadable files are simply not HDF5
        return False


def _starts_with(path: Path, magic: bytes) -> bool:
    try:
        with open(path, "rb") as file:
            return file.read(len(magic)) == magic
    except OSError:
        return False
