"""Normalised scores: 100 * (return - ref_min) / (ref_max - ref_min), as D4RL defines them."""

from __future__ import annotations

import numpy as np

from offrl.errors import DatasetError


def normalized_score(returns, ref_min_score: float | None, ref_max_score: float | None):
    if ref_min_score is None or ref_max_score is None:
        raise DatasetError(
            "The dataset has no reference scores (ref_min_score, ref_max_score); "
            "expected both in its metadata before a normalised score can be computed."
        )
    if ref_max_score == ref_min_score:
        raise DatasetError("The dataset's ref_max_score equals its ref_min_score; expected them to differ.")
    return 100.0 * (np.asarray(returns, dtype=np.float64) - ref_min_score) / (ref_max_score - ref_min_score)
