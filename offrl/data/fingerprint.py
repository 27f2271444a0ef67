"""A dataset's fingerprint: what a resumed run checks to be sure it trains on the same data."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from offrl.data.dataset import Dataset

_FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts", "episode_starts")


def dataset_fingerprint(dataset: Dataset) -> dict[str, Any]:
    """SHA-256 over every array (dtype, shape and bytes) and the metadata that changes training
    or scoring (action bounds, reference scores), with the sizes for a readable mismatch."""
    digest = hashlib.sha256()
    for name in _FIELDS:
        values = np.ascontiguousarray(getattr(dataset, name))
        digest.update(f"{name}:{values.dtype.str}:{values.shape};".encode())
        digest.update(values.tobytes())
    if dataset.costs is not None:  # only when present, so datasets without costs keep their fingerprints
        digest.update(f"costs:{dataset.costs.dtype.str}:{dataset.costs.shape};".encode())
        digest.update(np.ascontiguousarray(dataset.costs).tobytes())
    meta = dataset.metadata
    scoring = {
        "ref_min_score": meta.ref_min_score,
        "ref_max_score": meta.ref_max_score,
        "action_low": None if meta.action_low is None else np.asarray(meta.action_low, np.float32).tolist(),
        "action_high": None if meta.action_high is None else np.asarray(meta.action_high, np.float32).tolist(),
    }
    digest.update(json.dumps(scoring, sort_keys=True).encode())
    return {
        "sha256": digest.hexdigest(),
        "num_transitions": dataset.num_transitions,
        "num_episodes": dataset.num_episodes,
    }
