"""Corrupted copies of a dataset, following RIQL's protocol (Yang et al. 2023, "Towards Robust
Offline Reinforcement Learning under Diverse Data Corruption"; reference code
YangRui2015/RIQL, attack.py).

A fraction `rate` of the transitions is chosen by `seed`, and one field of those rows changes:

- `observations`, `actions`, `dynamics` (= `next_observations`), mode `random`:
  x + U(-scale, scale) * std(x), the standard deviation taken per dimension over the whole
  field (attack.py `corrupt_obs` / `corrupt_act` / `corrupt_next_obs`: `sample_data(...) * std`).
- `rewards`, mode `random`: r is replaced by U(-scale, scale) * 30 (attack.py `corrupt_rew`).
- `rewards`, mode `adversarial`: r -> -scale * r (attack.py `corrupt_rew`).

Two deliberate differences from the reference, both so that "what changed" is exact:
- The reference draws each row independently with probability `rate` (`sample_indexs`); here
  exactly round(rate * N) rows are chosen (a seeded permutation), so the fraction is the one asked.
- Corrupted actions are clipped into the dataset's action bounds when it has them (offrl's
  Dataset refuses actions outside the action space; D4RL's reference data has none recorded).

Adversarial corruption of observations, actions and dynamics in the reference is a gradient
attack on a pretrained EDAC critic (attack.py `split_gradient_attack`); it needs a trained agent
and is not offered here yet (refused with a clear error).

Every other field is left bit-identical. The result's provenance records the target, mode,
rate, scale, seed, the changed rows (a bitmask, `decode_rows`) and the source dataset's fingerprint.
"""

from __future__ import annotations

import base64
import copy
import math
from typing import Any

import numpy as np

from offrl.data.dataset import Dataset
from offrl.data.fingerprint import dataset_fingerprint
from offrl.errors import ConfigError

TARGETS = ("observations", "actions", "rewards", "dynamics")
MODES = ("random", "adversarial")
FIELD_OF_TARGET = {"observations": "observations", "actions": "actions", "rewards": "rewards",
                   "dynamics": "next_observations"}
RANDOM_REWARD_RANGE = 30.0  # attack.py corrupt_rew: sample_data(shape) * 30


def check_corruption(target: str, mode: str, rate: float, scale: float) -> None:
    """Refuse a setting outside the protocol, with one sentence naming the flag."""
    if target not in TARGETS:
        raise ConfigError(f"--target is {target!r}; expected one of {', '.join(TARGETS)}.")
    if mode not in MODES:
        raise ConfigError(f"--mode is {mode!r}; expected one of {', '.join(MODES)}.")
    if not (isinstance(rate, (int, float)) and 0.0 <= rate <= 1.0):  # NaN fails too
        raise ConfigError(f"--rate is {rate}; expected a fraction of the transitions in [0, 1].")
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale >= 0.0):
        raise ConfigError(f"--scale is {scale}; expected a finite number >= 0.")
    if mode == "adversarial" and target != "rewards":
        raise ConfigError(
            f"--mode adversarial with --target {target} needs a gradient attack on a trained critic "
            "(RIQL's attack.py), which offrl does not offer yet; expected --mode random, or --target rewards."
        )


def corrupted_rows(num_transitions: int, rate: float, seed: int) -> np.ndarray:
    """Exactly round(rate * N) distinct row indices, sorted, chosen by `seed`."""
    count = int(round(rate * num_transitions))
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(num_transitions)[:count])


def corrupt_dataset(dataset: Dataset, target: str, mode: str = "random", rate: float = 0.1,
                    scale: float = 0.3, seed: int = 0) -> Dataset:
    """A copy of `dataset` with `target` corrupted on a `rate` fraction of rows (module docstring).

    Defaults: rate 0.1 and scale 0.3 are the reference's command-line defaults
    (RIQL.py `--corruption_rate 0.1`, `--corruption_range 0.3`).
    """
    check_corruption(target, mode, rate, scale)
    rows = corrupted_rows(dataset.num_transitions, rate, seed)
    # The noise stream is separate from the row choice, so changing the scale keeps the rows.
    rng = np.random.default_rng([seed, 1])
    name = FIELD_OF_TARGET[target]
    original = getattr(dataset, name)
    values = original.copy()
    if target == "rewards":
        if mode == "random":
            values[rows] = rng.uniform(-scale, scale, size=len(rows)) * RANDOM_REWARD_RANGE
        else:
            values[rows] = -scale * original[rows]
    else:
        std = original.std(axis=0, keepdims=True)
        noise = rng.uniform(-scale, scale, size=(len(rows), original.shape[1])) * std
        values[rows] = original[rows] + noise
        if target == "actions" and dataset.metadata.action_low is not None and dataset.metadata.action_high is not None:
            values = np.clip(values, dataset.metadata.action_low, dataset.metadata.action_high)
    metadata = copy.deepcopy(dataset.metadata)
    metadata.provenance = {
        "corruption": corruption_record(dataset, target, mode, rate, scale, seed, rows),
        "source_provenance": dataset.metadata.provenance,
    }
    return dataset.replace(**{name: values.astype(original.dtype)}, metadata=metadata)


def corruption_record(dataset: Dataset, target: str, mode: str, rate: float, scale: float, seed: int,
                      rows: np.ndarray) -> dict[str, Any]:
    return {
        "protocol": "RIQL (Yang et al. 2023), YangRui2015/RIQL attack.py",
        "target": target,
        "field": FIELD_OF_TARGET[target],
        "mode": mode,
        "rate": float(rate),
        "scale": float(scale),
        "seed": int(seed),
        "num_rows": int(len(rows)),
        # One bit per transition (numpy packbits, big-endian bit order, base64): exact and compact.
        "rows_bitmask": encode_rows(rows, dataset.num_transitions),
        "source": dataset.where,
        "source_fingerprint": dataset_fingerprint(dataset),
    }


def encode_rows(rows: np.ndarray, num_transitions: int) -> str:
    mask = np.zeros(num_transitions, bool)
    mask[rows] = True
    return base64.b64encode(np.packbits(mask).tobytes()).decode("ascii")


def decode_rows(record: dict[str, Any], num_transitions: int) -> np.ndarray:
    """The changed rows recorded by `corrupt_dataset` (sorted indices)."""
    bits = np.unpackbits(np.frombuffer(base64.b64decode(record["rows_bitmask"]), np.uint8))[:num_transitions]
    return np.flatnonzero(bits)
