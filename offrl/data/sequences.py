"""Episodes as sequences: returns-to-go, timesteps within episodes, and windows of K steps
sampled on the device.

Sequence models (Decision Transformer) train on windows of consecutive steps of one episode;
Monte-Carlo methods (Cal-QL's lower bound) need each step's discounted return to its episode's
end. Both come from the dataset's episode bounds (`episode_starts`), never from guessing
boundaries out of `terminals`: a timeout ends an episode just as a terminal does.

The device layout is flat, one row per transition, like the transition arrays, plus two integer
columns: `timesteps` (the step's index within its episode) and `steps_left` (how many steps of
its episode remain, itself included). A window of K steps starting at row i is the gather
`i + arange(K)` with the steps at or past `steps_left[i]` masked and zeroed: windows that start
near an episode's end are padded on the right and never read into the next episode. The whole
sample is a gather inside `jit`, like `offrl.train.fused.sample_batch`.

Returns-to-go are `offrl.data.returns.returns_to_go` (shared with Cal-QL's Monte-Carlo bound):
the rewards from a step to its episode's last recorded step, nothing bootstrapped after it.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from offrl.data.returns import returns_to_go
from offrl.errors import DatasetError


@struct.dataclass
class SequenceBatch:
    """Windows of `context` steps: arrays of shape (batch, context, ...).

    `mask[b, k]` is True where step k of window b is a real step of the window's episode and
    False on the right padding (whose values are all zero).
    """

    observations: jnp.ndarray
    actions: jnp.ndarray
    returns_to_go: jnp.ndarray
    timesteps: jnp.ndarray
    mask: jnp.ndarray


def _episode_bounds(episode_starts: np.ndarray, num_transitions: int) -> tuple[np.ndarray, np.ndarray]:
    starts = np.asarray(episode_starts, dtype=np.int64)
    if starts.ndim != 1 or len(starts) == 0 or starts[0] != 0 or np.any(np.diff(starts) <= 0) or starts[-1] >= num_transitions:
        raise DatasetError(
            f"episode_starts must be strictly increasing indices beginning at 0 and below {num_transitions}."
        )
    return starts, np.diff(np.append(starts, num_transitions))


def episode_timesteps(episode_starts: np.ndarray, num_transitions: int) -> tuple[np.ndarray, np.ndarray]:
    """(timesteps, steps_left) per transition: its index within its episode, and how many steps of
    the episode remain from it (itself included, so the last step has 1)."""
    starts, lengths = _episode_bounds(episode_starts, num_transitions)
    timesteps = np.arange(num_transitions) - np.repeat(starts, lengths)
    steps_left = np.repeat(lengths, lengths) - timesteps
    return timesteps.astype(np.int32), steps_left.astype(np.int32)


def sequence_arrays(
    observations: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    terminals: np.ndarray,
    episode_starts: np.ndarray,
    gamma: float = 1.0,
) -> dict[str, np.ndarray]:
    """The device layout `sample_sequences` reads, from already-transformed transition arrays.

    Keys: observations, actions, returns_to_go (float32; gamma = 1, Decision Transformer's
    returns-to-go, by default), timesteps and steps_left (int32).
    """
    n = len(observations)
    if len(actions) != n or len(rewards) != n or len(terminals) != n:
        raise DatasetError(
            f"observations, actions, rewards and terminals have {n}, {len(actions)}, {len(rewards)} and "
            f"{len(terminals)} rows; expected equal lengths."
        )
    timesteps, steps_left = episode_timesteps(episode_starts, n)
    return {
        "observations": np.asarray(observations, np.float32),
        "actions": np.asarray(actions, np.float32),
        "returns_to_go": returns_to_go(rewards, episode_starts, terminals, gamma),
        "timesteps": timesteps,
        "steps_left": steps_left,
    }


def sample_sequences(data: dict[str, Any], key: jax.Array, batch_size: int, context: int) -> SequenceBatch:
    """`batch_size` windows of `context` steps, each starting at a uniformly drawn transition.

    Uniform starts over transitions equal the Decision Transformer reference's sampling
    (an episode with probability proportional to its length, then a uniform start within it).
    With `data["start_cdf"]` (cumulative start probabilities over rows, ending at 1) starts are
    drawn from it instead.
    """
    start_cdf = data.get("start_cdf")
    data = {name: jnp.asarray(data[name]) for name in ("observations", "actions", "returns_to_go", "timesteps", "steps_left")}
    num_rows = data["timesteps"].shape[0]
    if start_cdf is None:
        starts = jax.random.randint(key, (batch_size,), 0, num_rows)
    else:
        draws = jax.random.uniform(key, (batch_size,))
        starts = jnp.minimum(jnp.searchsorted(jnp.asarray(start_cdf), draws, side="right"), num_rows - 1)
    offsets = jnp.arange(context)
    mask = offsets[None, :] < data["steps_left"][starts][:, None]
    # Padded steps read the window's first row (always in range) and are zeroed below.
    index = jnp.where(mask, starts[:, None] + offsets[None, :], starts[:, None])

    def gather(name):
        values = data[name][index]
        keep = mask.reshape(mask.shape + (1,) * (values.ndim - 2))
        return jnp.where(keep, values, jnp.zeros((), values.dtype))

    return SequenceBatch(
        observations=gather("observations"),
        actions=gather("actions"),
        returns_to_go=gather("returns_to_go"),
        timesteps=gather("timesteps"),
        mask=mask,
    )
