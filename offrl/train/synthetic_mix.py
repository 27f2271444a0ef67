"""A real/synthetic mixing ratio for any algorithm (`--synthetic-ratio R`).

A dataset written by `offrl datasets augment --method synther` records which rows are synthetic
(provenance `synther.synthetic_rows`, rows [start, end)). With a ratio R the engine draws each
batch row from the synthetic rows with probability R and from the real ones with 1 - R (SynthER's
mixed replay, Lu et al. 2023: real_ratio = 1 - R), through the same on-device inverse-CDF draw as
`--sampler` (offrl/train/samplers.py). Unset, rows are drawn uniformly, synthetic or not.
"""

from __future__ import annotations

import numpy as np

from offrl.data.dataset import Dataset
from offrl.errors import ConfigError
from offrl.train.samplers import sampling_cdf


def check_synthetic_ratio(ratio: float | None) -> None:
    if ratio is not None and not 0.0 <= ratio <= 1.0:
        raise ConfigError(f"--synthetic-ratio is {ratio}; expected a fraction in [0, 1].")


def synthetic_rows(dataset: Dataset) -> tuple[int, int]:
    record = dataset.metadata.provenance.get("synther")
    if not record or "synthetic_rows" not in record:
        raise ConfigError(
            f"--synthetic-ratio needs a dataset with synthetic rows, but {dataset.where} records none; "
            "expected one written by `offrl datasets augment --method synther`."
        )
    start, end = (int(v) for v in record["synthetic_rows"])
    if record.get("real_transitions", 0) + record.get("synthetic_transitions", 0) != dataset.num_transitions:
        # A held-out split or episode filter removed rows, so the recorded row range no longer applies.
        raise ConfigError(
            f"--synthetic-ratio needs the augmented dataset whole, but {dataset.where} trains on "
            f"{dataset.num_transitions} of its {record.get('real_transitions', 0) + record.get('synthetic_transitions', 0)} rows; "
            "expected no --validation-fraction or episode filter with it."
        )
    if not 0 <= start < end <= dataset.num_transitions:
        raise ConfigError(f"{dataset.where}: synthetic_rows {[start, end]} lie outside its {dataset.num_transitions} rows.")
    return start, end


def mixing_probabilities(dataset: Dataset, ratio: float) -> np.ndarray:
    """Per-row probability: R spread over the synthetic rows, 1 - R over the real ones."""
    check_synthetic_ratio(ratio)
    start, end = synthetic_rows(dataset)
    synthetic = np.zeros(dataset.num_transitions, bool)
    synthetic[start:end] = True
    real_count = int((~synthetic).sum())
    if real_count == 0 and ratio < 1.0:
        raise ConfigError(f"--synthetic-ratio is {ratio} but every row is synthetic; expected 1.")
    probabilities = np.where(synthetic, ratio / synthetic.sum(), (1.0 - ratio) / max(real_count, 1))
    return probabilities / probabilities.sum()


def mix_arrays(dataset: Dataset, arrays: dict[str, np.ndarray], ratio: float | None) -> dict[str, np.ndarray]:
    """`arrays` with the mixing CDF added (refused beside a re-weighting --sampler, which owns the CDF)."""
    if ratio is None:
        return arrays
    if "sampling_cdf" in arrays:
        raise ConfigError("--synthetic-ratio and a weighted --sampler both set the sampling weights; expected one of them.")
    return {**arrays, "sampling_cdf": sampling_cdf(mixing_probabilities(dataset, ratio))}
