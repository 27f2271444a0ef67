"""Re-weighted sampling of the offline data, for any algorithm (`--sampler`).

Imbalanced data (many poor episodes, a few good ones) holds an algorithm close to the poor
behaviour when transitions are drawn uniformly. Trajectory re-weighting (Hong et al. 2023,
"Harnessing Mixed Offline RL Datasets via Trajectory Weighting", and "Beyond Uniform Sampling:
Offline RL with Imbalanced Datasets", reference code Improbable-AI/dw-offline-rl,
IQL/dataset_utils.py `RW` / `AW`) draws transitions of better episodes more often:

- `return-weighted`: each transition of episode e has weight exp(g_e / T), g_e the episode's return
  min-max normalised to [0, 1] over the dataset (`RW`); so an episode's share is len_e * exp(g_e / T).
- `advantage-weighted`: the same with g_e = G_e - V(s0_e), V a linear regression of the returns on
  the episodes' first observations, min-max normalised (`AW`).
- `episode-weights`: the episodes' shares are given (`--sampler-weights FILE`, one non-negative
  number per episode): episode e is drawn with probability w_e / sum(w).

T is `--sampler-temperature` (0.1: experiments/d4rl/run_iql.py `AW-0.1`). If all returns are
equal the reference divides by zero; here every episode then weighs the same (uniform).

The engine puts the cumulative distribution over transitions on the device (`sampling_cdf`) and
`offrl.train.fused.sample_batch` draws by inverse-CDF inside the compiled step.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from offrl.data.dataset import Dataset
from offrl.errors import ConfigError

SAMPLERS = ("uniform", "return-weighted", "advantage-weighted", "episode-weights")


def check_sampler(sampler: str, temperature: float, weights_file: str | None) -> None:
    if sampler not in SAMPLERS:
        raise ConfigError(f"--sampler is {sampler!r}; expected one of {', '.join(SAMPLERS)}.")
    if not (temperature > 0 and np.isfinite(temperature)):
        raise ConfigError(f"--sampler-temperature is {temperature}; expected a positive number.")
    if (sampler == "episode-weights") != (weights_file is not None):
        raise ConfigError("--sampler episode-weights and --sampler-weights FILE go together; expected both or neither.")


def check_episode_weights(weights: np.ndarray, num_episodes: int, where: str) -> np.ndarray:
    weights = np.asarray(weights, np.float64).reshape(-1)
    if len(weights) != num_episodes:
        raise ConfigError(f"{where} has {len(weights)} weights; expected one per training episode ({num_episodes}).")
    bad = np.flatnonzero(~np.isfinite(weights) | (weights < 0))
    if len(bad):
        raise ConfigError(
            f"{where}: the weight of episode {int(bad[0])} is {weights[bad[0]]}; expected finite weights >= 0."
        )
    if weights.sum() <= 0:
        raise ConfigError(f"{where}: every weight is 0; expected at least one positive weight.")
    return weights


def read_episode_weights(path: str, num_episodes: int) -> np.ndarray:
    """One weight per episode from a .npy file or a text file (whitespace/comma separated)."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"--sampler-weights {path} does not exist; expected a .npy or text file of episode weights.")
    try:
        weights = np.load(file) if file.suffix == ".npy" else np.loadtxt(file, delimiter="," if file.suffix == ".csv" else None, ndmin=1)
    except ValueError as error:
        raise ConfigError(f"--sampler-weights {path} could not be read as numbers ({error}); expected one weight per episode.") from None
    return check_episode_weights(weights, num_episodes, f"--sampler-weights {path}")


def _min_max(values: np.ndarray) -> np.ndarray:
    span = values.max() - values.min()
    return np.zeros_like(values) if span <= 0 else (values - values.min()) / span


def _softmax_over_transitions(scores: np.ndarray, lengths: np.ndarray, temperature: float) -> np.ndarray:
    """Per-transition probabilities for episode scores, each transition of episode e weighing exp(score_e / T)."""
    logits = scores / temperature
    per_episode = np.exp(logits - logits.max())
    transition = np.repeat(per_episode, lengths)
    return transition / transition.sum()


def transition_probabilities(dataset: Dataset, sampler: str, temperature: float = 0.1,
                             weights_file: str | None = None) -> np.ndarray | None:
    """Probability of drawing each transition (float64, sums to 1); None for uniform."""
    check_sampler(sampler, temperature, weights_file)
    lengths = dataset.episode_lengths
    if sampler == "uniform":
        return None
    if sampler == "episode-weights":
        weights = read_episode_weights(weights_file, dataset.num_episodes)
        transition = np.repeat(weights / lengths, lengths)
        return transition / transition.sum()
    returns = dataset.episode_returns()
    if sampler == "return-weighted":
        return _softmax_over_transitions(_min_max(returns), lengths, temperature)
    starts = dataset.observations[dataset.episode_starts].astype(np.float64)
    design = np.concatenate([starts, np.ones((len(starts), 1))], axis=1)  # linear regression with an intercept
    coefficients, *_ = np.linalg.lstsq(design, returns, rcond=None)
    return _softmax_over_transitions(_min_max(returns - design @ coefficients), lengths, temperature)


def sampling_cdf(probabilities: np.ndarray) -> np.ndarray:
    """Cumulative distribution for inverse-CDF sampling on the device (float32, last value 1)."""
    cdf = np.cumsum(probabilities, dtype=np.float64)
    cdf /= cdf[-1]
    return cdf.astype(np.float32)
