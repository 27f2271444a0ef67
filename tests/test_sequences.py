"""The shared sequence layer: returns-to-go, timesteps, and windows that never cross episodes."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from offrl.data.sequences import episode_timesteps, sample_sequences, sequence_arrays
from offrl.errors import DatasetError

from dataset_helpers import make_random_dataset


def reference_returns(rewards, episode_starts, gamma):
    """Step by step, the definition: sum of gamma^k r[t + k] up to the end of t's episode."""
    ends = list(episode_starts[1:]) + [len(rewards)]
    result = np.zeros(len(rewards))
    for start, end in zip(episode_starts, ends):
        for t in range(start, end):
            result[t] = sum(gamma ** (j - t) * rewards[j] for j in range(t, end))
    return result


@pytest.mark.parametrize("gamma", [1.0, 0.99, 0.5, 0.0])
def test_returns_to_go_sum_rewards_to_the_episode_end(gamma):
    dataset = make_random_dataset([5, 1, 7, 3], ends=["terminal", "timeout", "terminal", "none"])
    expected = reference_returns(dataset.rewards.astype(np.float64), dataset.episode_starts, gamma)
    arrays = sequence_arrays(dataset.observations, dataset.actions, dataset.rewards, dataset.terminals,
                             dataset.episode_starts, gamma)
    actual = arrays["returns_to_go"]
    assert actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)
    # At an episode's first step, gamma = 1 gives the episode's return.
    if gamma == 1.0:
        np.testing.assert_allclose(actual[dataset.episode_starts], dataset.episode_returns(), rtol=1e-5)
    # At an episode's last step only its own reward counts (nothing leaks from the next episode).
    last = dataset.episode_ends - 1
    np.testing.assert_allclose(actual[last], dataset.rewards[last], rtol=1e-6)


def test_timesteps_count_from_each_episode_start():
    timesteps, steps_left = episode_timesteps(np.array([0, 3, 4]), 8)
    np.testing.assert_array_equal(timesteps, [0, 1, 2, 0, 0, 1, 2, 3])
    np.testing.assert_array_equal(steps_left, [3, 2, 1, 1, 4, 3, 2, 1])
    with pytest.raises(DatasetError, match="episode_starts"):
        episode_timesteps(np.array([0, 5]), 5)


def sequence_data(lengths, context_gamma=1.0):
    dataset = make_random_dataset(lengths, obs_dim=2, action_dim=1)
    # Observations carry their row index, so a window shows exactly which rows it read.
    observations = np.stack([np.arange(dataset.num_transitions), np.zeros(dataset.num_transitions)], axis=1)
    arrays = sequence_arrays(observations, dataset.actions, dataset.rewards, dataset.terminals, dataset.episode_starts,
                             context_gamma)
    return dataset, arrays


def test_windows_stay_inside_one_episode_and_mask_the_padding():
    lengths = [7, 2, 11, 1, 5]
    dataset, arrays = sequence_data(lengths)
    episode_of = np.repeat(np.arange(len(lengths)), lengths)
    context = 6
    batch = jax.jit(lambda key: sample_sequences(arrays, key, 512, context))(jax.random.PRNGKey(0))
    batch = jax.tree.map(np.asarray, batch)  # NumPy from here: the checks below run no JAX ops
    rows = batch.observations[..., 0].astype(int)
    mask = batch.mask
    assert batch.observations.shape == (512, context, 2) and batch.actions.shape == (512, context, 1)
    assert batch.returns_to_go.shape == batch.timesteps.shape == mask.shape == (512, context)
    starts = rows[:, 0]
    assert len(np.unique(starts)) == dataset.num_transitions  # every row gets to start a window
    for window, start in zip(range(512), starts):
        valid = mask[window]
        expected_valid = min(context, dataset.episode_ends[episode_of[start]] - start)
        # Real steps come first, then padding; consecutive rows of the start's episode only.
        np.testing.assert_array_equal(valid, np.arange(context) < expected_valid)
        np.testing.assert_array_equal(rows[window][valid], start + np.arange(expected_valid))
        assert np.all(episode_of[rows[window][valid]] == episode_of[start])
        # Every field is aligned with the row it came from, and padding is all zeros.
        real_rows = rows[window][valid]
        np.testing.assert_array_equal(batch.actions[window][valid], dataset.actions[real_rows])
        np.testing.assert_array_equal(batch.returns_to_go[window][valid], arrays["returns_to_go"][real_rows])
        np.testing.assert_array_equal(batch.timesteps[window][valid], arrays["timesteps"][real_rows])
        for field in (batch.observations, batch.actions, batch.returns_to_go, batch.timesteps):
            assert not np.any(np.asarray(field[window])[~valid])


def test_window_returns_to_go_drop_by_each_reward():
    """Inside a window, R[k] - R[k + 1] is the reward at step k; the last real step's R is its reward
    when the window reaches the episode's end."""
    dataset, arrays = sequence_data([9, 4])
    batch = jax.tree.map(np.asarray, sample_sequences(arrays, jax.random.PRNGKey(1), 64, 4))
    rows = batch.observations[..., 0].astype(int)
    for window in range(64):
        valid = np.asarray(batch.mask[window])
        real = rows[window][valid]
        rtg = np.asarray(batch.returns_to_go[window])[valid]
        np.testing.assert_allclose(rtg[:-1] - rtg[1:], dataset.rewards[real[:-1]], rtol=1e-4, atol=1e-5)
        if real[-1] + 1 in dataset.episode_ends:
            np.testing.assert_allclose(rtg[-1], dataset.rewards[real[-1]], rtol=1e-5)
