"""Write DSRL-layout HDF5 files (safe offline RL); `read_d4rl_hdf5` reads them back.

DSRL (Liu et al. 2023, liuzuxin/DSRL) stores each dataset as flat arrays `observations,
next_observations, actions, rewards, costs, terminals, timeouts` (its `get_dataset()` returns
exactly these keys). offrl writes the same keys, plus `metadata/` attributes for what a DSRL
file cannot say otherwise (env id, reference scores, provenance), which readers of the plain
layout ignore.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import h5py
import numpy as np

from offrl.atomic import atomic_write_bytes
from offrl.data.d4rl_io import to_jsonable
from offrl.data.dataset import Dataset
from offrl.errors import DatasetError

DSRL_KEYS = ("observations", "next_observations", "actions", "rewards", "costs", "terminals", "timeouts")


def write_dsrl_hdf5(dataset: Dataset, path: str | os.PathLike) -> Path:
    """Write `dataset` (which must carry costs) as a DSRL-layout HDF5 file, atomically; return the path.

    Episode boundaries are the terminal/timeout flags, as in DSRL; an episode that ends with
    neither flag (a cut made by a filter) gets a timeout on its last step so that reading the
    file back finds the same episodes.
    """
    path = Path(path)
    if dataset.costs is None:
        raise DatasetError(f"{dataset.where} has no 'costs' field; expected per-step costs to write a DSRL file.")
    timeouts = dataset.timeouts.copy()
    last = dataset.episode_ends - 1
    timeouts[last] |= ~dataset.terminals[last]
    meta = dataset.metadata
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as file:
        for key, values in (("observations", dataset.observations), ("next_observations", dataset.next_observations),
                            ("actions", dataset.actions), ("rewards", dataset.rewards), ("costs", dataset.costs),
                            ("terminals", dataset.terminals), ("timeouts", timeouts)):
            file.create_dataset(key, data=values)
        group = file.create_group("metadata")
        for key, value in (("env_id", meta.env_id), ("ref_min_score", meta.ref_min_score), ("ref_max_score", meta.ref_max_score)):
            if value is not None:
                group.attrs[key] = value
        group.attrs["provenance_json"] = json.dumps(to_jsonable(meta.provenance))
    atomic_write_bytes(path, buffer.getvalue())
    return path
