"""Engine options that apply to every algorithm: heuristic blending (`--hubl`, offrl/train/hubl.py)
and re-weighted sampling (`--sampler`, offrl/train/samplers.py).

Both act on the training arrays the engine builds, never inside an algorithm: HUBL relabels
`rewards` (and the engine trains with the blended discount), a non-uniform sampler adds the
`sampling_cdf` that `offrl.train.fused.sample_batch` draws from.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from offrl.data.dataset import Dataset
from offrl.errors import ConfigError
from offrl.train.extra_fields import declared_fields
from offrl.train.hubl import blend_rewards, check_hubl
from offrl.train.samplers import check_sampler, sampling_cdf, transition_probabilities


def check_addons(algo: ModuleType, algo_config: Any, train: Any) -> None:
    check_sampler(train.sampler, train.sampler_temperature, train.sampler_weights)
    check_hubl(train.hubl, algo_config, algo.NAME)
    own_batches = getattr(algo, "training_data", None) is not None or getattr(algo, "sample", None) is not None
    if own_batches and (train.sampler != "uniform" or train.hubl > 0):
        raise ConfigError(
            f"{algo.NAME} lays out and samples its own batches, so --sampler and --hubl do not apply to it; "
            "expected --sampler uniform and --hubl 0."
        )
    if "initial_state_weights" in declared_fields(algo, algo_config) and train.sampler != "uniform":
        # 1/p on episode starts averages f(s0) only under uniform row sampling (COptiDICE's nu and chi terms).
        raise ConfigError(f"--sampler {train.sampler} reweights the rows that {algo.NAME}'s initial-state terms average "
                          "uniformly; expected --sampler uniform.")


def addon_arrays(algo: ModuleType, algo_config: Any, dataset: Dataset, arrays: dict[str, np.ndarray],
                 train: Any) -> dict[str, np.ndarray]:
    """`arrays` (the engine's training arrays of `dataset`) with the add-ons of `train` applied."""
    check_addons(algo, algo_config, train)
    arrays = dict(arrays)
    if train.hubl > 0:
        arrays["rewards"] = blend_rewards(arrays["rewards"], arrays["dones"], dataset.episode_starts,
                                          dataset.terminals, algo_config.discount, train.hubl)
    probabilities = transition_probabilities(dataset, train.sampler, train.sampler_temperature, train.sampler_weights)
    if probabilities is not None:
        arrays["sampling_cdf"] = sampling_cdf(probabilities)
    return arrays
