"""Small random datasets and exact comparisons of datasets, shared by the tests (a plain module:
test modules import it, never each other or conftest)."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from offrl.data.dataset import Dataset, DatasetMetadata
from offrl.types import Batch

ARRAY_FIELDS = (
    "observations",
    "actions",
    "rewards",
    "next_observations",
    "terminals",
    "timeouts",
    "episode_starts",
)


def make_random_dataset(
    episode_lengths: Sequence[int],
    obs_dim: int = 3,
    action_dim: int = 2,
    seed: int = 0,
    ends: Sequence[str] | None = None,
    metadata: DatasetMetadata | None = None,
) -> Dataset:
    """A dataset of random, continuous episodes.

    `ends[i]` says how episode i ends: "terminal", "timeout" or "none" (cut without a flag, like
    a trailing partial episode). By default episodes alternate terminal/timeout and, with three
    or more episodes, the last one is a trailing partial episode. Within an episode
    `next_observations[t] == observations[t + 1]`; every observation is distinct, so any shift
    across rows or episodes is visible. Actions lie in [-1, 1], the default metadata's bounds.
    """
    rng = np.random.default_rng(seed)
    count = len(episode_lengths)
    if ends is None:
        ends = [("terminal", "timeout")[i % 2] for i in range(count)]
        if count >= 3:
            ends[-1] = "none"
    assert len(ends) == count and all(e in ("terminal", "timeout", "none") for e in ends)
    observations, next_observations, terminals, timeouts = [], [], [], []
    for length, end in zip(episode_lengths, ends):
        rows = rng.normal(size=(length + 1, obs_dim)).astype(np.float32)
        observations.append(rows[:-1])
        next_observations.append(rows[1:])
        last = np.arange(length) == length - 1
        terminals.append(last & (end == "terminal"))
        timeouts.append(last & (end == "timeout"))
    n = int(sum(episode_lengths))
    if metadata is None:
        metadata = DatasetMetadata(
            name="random",
            env_id=None,
            ref_min_score=-12.5,
            ref_max_score=250.25,
            action_low=-np.ones(action_dim, np.float32),
            action_high=np.ones(action_dim, np.float32),
            provenance={"maker": "make_random_dataset", "seed": seed, "episode_lengths": list(episode_lengths)},
        )
    return Dataset(
        observations=np.concatenate(observations),
        actions=rng.uniform(-1, 1, size=(n, action_dim)).astype(np.float32),
        rewards=rng.normal(size=n).astype(np.float32),
        next_observations=np.concatenate(next_observations),
        terminals=np.concatenate(terminals),
        timeouts=np.concatenate(timeouts),
        episode_starts=np.concatenate([[0], np.cumsum(episode_lengths)[:-1]]).astype(np.int64),
        metadata=metadata,
    )


def assert_same_arrays(actual: Dataset, expected: Dataset) -> None:
    """Every array field equal, bit for bit, with the same dtype."""
    for name in ARRAY_FIELDS:
        a, e = getattr(actual, name), getattr(expected, name)
        assert a.dtype == e.dtype, f"{name}: dtype {a.dtype} != {e.dtype}"
        assert a.shape == e.shape, f"{name}: shape {a.shape} != {e.shape}"
        assert np.array_equal(a.view(np.uint8), e.view(np.uint8)), f"{name} differs"


def assert_aligned(dataset: Dataset) -> None:
    """next_obs[t] == obs[t + 1] inside every episode; end flags only on last steps."""
    ends = dataset.episode_ends
    for start, end in zip(dataset.episode_starts, ends):
        np.testing.assert_array_equal(
            dataset.next_observations[start : end - 1], dataset.observations[start + 1 : end]
        )
        assert not np.any(dataset.terminals[start : end - 1])
        assert not np.any(dataset.timeouts[start : end - 1])
    assert not np.any(dataset.terminals & dataset.timeouts)


def random_batch(n: int = 64, obs_dim: int = 4, action_dim: int = 2, seed: int = 0, done_rate: float = 0.1,
                 mc_returns: bool = False) -> Batch:
    """A batch of random transitions (actions inside (-1, 1), a `done_rate` share of dones) for
    unit tests of `update`; `mc_returns` adds random Monte-Carlo returns (Cal-QL)."""
    rng = np.random.default_rng(seed)
    return Batch(
        observations=jnp.asarray(rng.normal(size=(n, obs_dim)), jnp.float32),
        actions=jnp.asarray(rng.uniform(-0.9, 0.9, size=(n, action_dim)), jnp.float32),
        rewards=jnp.asarray(rng.normal(size=n), jnp.float32),
        next_observations=jnp.asarray(rng.normal(size=(n, obs_dim)), jnp.float32),
        dones=jnp.asarray(rng.uniform(size=n) < done_rate, jnp.float32),
        mc_returns=jnp.asarray(rng.normal(size=n), jnp.float32) if mc_returns else None,
    )


def interleaved_episodes(every_nth: Dataset, rest: Dataset, every: int, name: str, provenance: dict,
                         references: tuple[float, float]) -> Dataset:
    """Episodes 0, every, 2 every, ... from `every_nth`, the others from `rest`, in that order
    (all of both), with `every_nth`'s metadata renamed and given this provenance and these
    reference returns (R_min, R_max)."""
    from offrl.data.collect import episodes_to_dataset

    firsts = [every_nth.episode(i) for i in range(every_nth.num_episodes)]
    others = [rest.episode(i) for i in range(rest.num_episodes)]
    total = len(firsts) + len(others)
    episodes = [firsts.pop(0) if i % every == 0 else others.pop(0) for i in range(total)]
    metadata = type(every_nth.metadata)(**{**vars(every_nth.metadata)})
    metadata.name, metadata.provenance = name, dict(provenance)
    metadata.ref_min_score, metadata.ref_max_score = references
    return episodes_to_dataset(episodes, metadata)
