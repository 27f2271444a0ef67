"""D4RL-layout HDF5 and .npz files: alignment, flags, metadata, exact npz round trips."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from offrl.data import d4rl_io
from offrl.data.d4rl_io import read_d4rl_hdf5, read_npz, write_npz
from offrl.data.load import load_dataset
from offrl.errors import DatasetError


def write_d4rl(path, dataset=None, with_next=True, attrs=None, **arrays):
    """A D4RL-layout HDF5 file from a Dataset (flat arrays) and/or explicit arrays."""
    if dataset is not None:
        base = {
            "observations": dataset.observations,
            "actions": dataset.actions,
            "rewards": dataset.rewards,
            "terminals": dataset.terminals,
            "timeouts": dataset.timeouts,
        }
        if with_next:
            base["next_observations"] = dataset.next_observations
        arrays = {**base, **arrays}
    with h5py.File(path, "w") as file:
        for key, values in arrays.items():
            file.create_dataset(key, data=values)
        file.attrs.update(attrs or {})
    return path


def hand_made_arrays():
    """Eight rows whose observations are their row index: terminal at 2, timeout at 5, rows 6-7
    a trailing partial episode."""
    observations = np.repeat(np.arange(8, dtype=np.float32)[:, None], 2, axis=1)
    return {
        "observations": observations,
        "actions": np.linspace(-1, 1, 8, dtype=np.float32)[:, None],
        "rewards": np.arange(8, dtype=np.float32) * 10,
        "terminals": np.array([0, 0, 1, 0, 0, 0, 0, 0], dtype=bool),
        "timeouts": np.array([0, 0, 0, 0, 0, 1, 0, 0], dtype=bool),
    }


# ------------------------------------------------------------------------- D4RL HDF5
def test_with_next_observations_keeps_every_row(tmp_path, make_dataset, same_arrays, aligned):
    original = make_dataset([4, 2, 6, 3], ends=["terminal", "timeout", "terminal", "none"])
    loaded = read_d4rl_hdf5(write_d4rl(tmp_path / "full.hdf5", original))
    same_arrays(loaded, original)
    aligned(loaded)
    assert loaded.metadata.provenance["has_next_observations"] is True
    assert loaded.metadata.source == str(tmp_path / "full.hdf5")
    assert loaded.metadata.name == "full"


def test_without_next_observations_hand_made_example(tmp_path, aligned):
    loaded = read_d4rl_hdf5(write_d4rl(tmp_path / "old.hdf5", **hand_made_arrays()))
    # Kept rows: 0-4 and 6. Row 5 (timeout) and row 7 (last row) have no known successor.
    # Row 2 is terminal: kept, next_obs = obs (never bootstrapped). Rows 4 and 6 lost their
    # successor, so they now end their episodes by timeout.
    kept = [0, 1, 2, 3, 4, 6]
    np.testing.assert_array_equal(loaded.observations[:, 0], kept)
    np.testing.assert_array_equal(loaded.next_observations[:, 0], [1, 2, 2, 4, 5, 7])
    np.testing.assert_array_equal(loaded.actions[:, 0], np.linspace(-1, 1, 8, dtype=np.float32)[kept])
    np.testing.assert_array_equal(loaded.rewards, [0, 10, 20, 30, 40, 60])
    np.testing.assert_array_equal(loaded.terminals, [False, False, True, False, False, False])
    np.testing.assert_array_equal(loaded.timeouts, [False, False, False, False, True, True])
    np.testing.assert_array_equal(loaded.episode_starts, [0, 3, 5])
    aligned(loaded)
    assert loaded.metadata.provenance["rows_dropped_without_next_observation"] == 2


def test_without_next_observations_matches_the_full_file(tmp_path, make_dataset):
    """Dropping next_observations loses exactly the timeout/trailing rows, nothing shifts."""
    original = make_dataset([4, 3, 5, 2], ends=["timeout", "terminal", "timeout", "none"])
    loaded = read_d4rl_hdf5(write_d4rl(tmp_path / "x.hdf5", original, with_next=False))
    keep = np.ones(original.num_transitions, dtype=bool)
    keep[[3, 11, 13]] = False  # the two timeout rows and the final row
    np.testing.assert_array_equal(loaded.observations, original.observations[keep])
    expected_next = original.next_observations.copy()
    expected_next[6] = original.observations[6]  # terminal row: its successor is unknown, never used
    np.testing.assert_array_equal(loaded.next_observations, expected_next[keep])
    np.testing.assert_array_equal(loaded.actions, original.actions[keep])
    np.testing.assert_array_equal(loaded.rewards, original.rewards[keep])
    np.testing.assert_array_equal(loaded.terminals, original.terminals[keep])
    np.testing.assert_array_equal(np.flatnonzero(loaded.timeouts), [2, 9, 10])
    np.testing.assert_array_equal(loaded.episode_starts, [0, 3, 6, 10])


def test_row_both_terminal_and_timeout_counts_as_terminal(tmp_path):
    arrays = hand_made_arrays()
    arrays["timeouts"][2] = True  # row 2 is already terminal
    arrays["next_observations"] = arrays["observations"] + 1
    loaded = read_d4rl_hdf5(write_d4rl(tmp_path / "both.hdf5", **arrays))
    assert loaded.terminals[2] and not loaded.timeouts[2]
    assert loaded.timeouts[5]
    assert loaded.metadata.provenance["timeouts_cleared_on_terminal_rows"] == 1


def test_column_shaped_rewards_and_flags_are_accepted(tmp_path):
    arrays = hand_made_arrays()
    arrays["next_observations"] = arrays["observations"] + 1
    for key in ("rewards", "terminals", "timeouts"):
        arrays[key] = arrays[key][:, None]
    loaded = read_d4rl_hdf5(write_d4rl(tmp_path / "col.hdf5", **arrays))
    np.testing.assert_array_equal(loaded.rewards, np.arange(8) * 10)
    np.testing.assert_array_equal(loaded.episode_starts, [0, 3, 6])


def test_metadata_from_attributes_and_metadata_group(tmp_path, make_dataset):
    path = write_d4rl(tmp_path / "meta.hdf5", make_dataset([3, 3]), attrs={"ref_min_score": -5.0})
    with h5py.File(path, "a") as file:
        file["metadata/ref_max_score"] = 95.0
        file["metadata/env_id"] = b"Hopper-v5"
        file["metadata/algorithm"] = b"SAC"
        file["metadata/iteration"] = 7
        file["metadata/policy/fc0/weight"] = np.ones((4, 4))
        file["infos/qpos"] = np.zeros((6, 2))
        file["extra_stuff"] = np.zeros(3)
    loaded = read_d4rl_hdf5(path)
    assert (loaded.metadata.ref_min_score, loaded.metadata.ref_max_score) == (-5.0, 95.0)
    assert loaded.metadata.env_id == "Hopper-v5"
    assert loaded.metadata.provenance["d4rl_metadata"] == {
        "ref_max_score": 95.0,
        "env_id": "Hopper-v5",
        "algorithm": "SAC",
        "iteration": 7,
    }
    assert loaded.metadata.provenance["ignored_keys"] == ["extra_stuff"]
    assert loaded.metadata.action_low is None  # D4RL files carry no bounds


def test_d4rl_file_name_does_not_invent_reference_scores(tmp_path, make_dataset):
    loaded = read_d4rl_hdf5(write_d4rl(tmp_path / "hopper-medium-v2.hdf5", make_dataset([5, 5], obs_dim=11, action_dim=3)))
    assert loaded.metadata.ref_min_score is None and loaded.metadata.ref_max_score is None
    assert loaded.metadata.env_id is None
    assert loaded.metadata.name == "hopper-medium-v2"


def test_non_numeric_reference_score_is_refused(tmp_path, make_dataset):
    path = write_d4rl(tmp_path / "m.hdf5", make_dataset([2]), attrs={"ref_min_score": "lots"})
    with pytest.raises(DatasetError, match="'ref_min_score' is 'lots'; expected a finite number"):
        read_d4rl_hdf5(path)


def test_hdf5_group_instead_of_array(tmp_path):
    arrays = hand_made_arrays()
    del arrays["timeouts"]
    path = write_d4rl(tmp_path / "g.hdf5", **arrays)
    with h5py.File(path, "a") as file:
        file["timeouts/inner"] = np.zeros(8)
    with pytest.raises(DatasetError, match="'timeouts' is an HDF5 group"):
        read_d4rl_hdf5(path)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("observations", np.arange(8, dtype=np.float32), r"'observations' has shape \(8,\); expected a 2-D array"),
        ("rewards", np.zeros((8, 2)), r"'rewards' has shape \(8, 2\); expected one value per transition"),
        ("actions", np.array([b"a"] * 8), "'actions' has dtype .*expected numbers"),
    ],
)
def test_badly_shaped_arrays(tmp_path, key, value, message):
    arrays = hand_made_arrays()
    arrays[key] = value
    with pytest.raises(DatasetError, match=message):
        read_d4rl_hdf5(write_d4rl(tmp_path / "bad.hdf5", **arrays))


# -------------------------------------------------------------------------------- npz
def test_npz_round_trip_is_exact(tmp_path, make_dataset, same_arrays):
    original = make_dataset([3, 5, 1, 4], ends=["terminal", "none", "timeout", "none"])
    original.metadata.env_id = "Hopper-v5"
    path = write_npz(original, tmp_path / "ds.npz")
    loaded = read_npz(path)
    same_arrays(loaded, original)  # episode boundaries without flags survive too
    assert list(loaded.episode_lengths) == [3, 5, 1, 4]
    meta, want = loaded.metadata, original.metadata
    assert (meta.name, meta.env_id, meta.ref_min_score, meta.ref_max_score) == (want.name, want.env_id, want.ref_min_score, want.ref_max_score)
    np.testing.assert_array_equal(meta.action_low, want.action_low)
    np.testing.assert_array_equal(meta.action_high, want.action_high)
    assert meta.provenance == want.provenance
    assert meta.source == str(path)
    assert [p.name for p in tmp_path.iterdir()] == ["ds.npz"]  # no temporary file left


def test_npz_without_metadata_and_next_observations_behaves_like_d4rl(tmp_path):
    arrays = hand_made_arrays()
    np.savez(tmp_path / "plain.npz", **arrays)
    from_npz = read_npz(tmp_path / "plain.npz")
    from_hdf5 = read_d4rl_hdf5(write_d4rl(tmp_path / "plain.hdf5", **arrays))
    for name in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts", "episode_starts"):
        np.testing.assert_array_equal(getattr(from_npz, name), getattr(from_hdf5, name), err_msg=name)
    assert from_npz.metadata.ref_min_score is None and from_npz.metadata.env_id is None
    assert from_npz.metadata.name == "plain"


def test_npz_episode_starts_need_next_observations(tmp_path):
    np.savez(tmp_path / "s.npz", episode_starts=np.array([0, 3]), **hand_made_arrays())
    with pytest.raises(DatasetError, match="'episode_starts' but no 'next_observations'"):
        read_npz(tmp_path / "s.npz")


def test_npz_action_bounds_checked_or_clipped(tmp_path, make_dataset):
    dataset = make_dataset([3, 3], action_dim=2)
    path = write_npz(dataset, tmp_path / "b.npz")
    with np.load(path) as archive:
        contents = dict(archive)
    contents["actions"] = contents["actions"].copy()
    contents["actions"][4, 1] = -3.0
    np.savez(path, **contents)
    with pytest.raises(DatasetError, match="'actions' row 4 dimension 1 is -3"):
        read_npz(path)
    clipped = read_npz(path, clip_actions=True)
    assert clipped.actions[4, 1] == -1.0
    assert clipped.metadata.provenance["clipped_action_values"] == 1
    np.testing.assert_array_equal(np.delete(clipped.actions.ravel(), 9), np.delete(dataset.actions.ravel(), 9))


def test_npz_bounds_of_wrong_size(tmp_path):
    np.savez(tmp_path / "w.npz", action_low=np.array([-1.0, -1.0]), action_high=np.array([1.0, 1.0]), **hand_made_arrays())
    with pytest.raises(DatasetError, match="'action_low' has 2 values but actions have 1 dimensions"):
        read_npz(tmp_path / "w.npz")


def test_npz_with_pickled_object_is_refused(tmp_path):
    arrays = hand_made_arrays()
    np.savez(tmp_path / "o.npz", env_id=np.array([{"evil": 1}], dtype=object), **arrays)
    with pytest.raises(DatasetError, match="could not be read as a NumPy .npz"):
        read_npz(tmp_path / "o.npz")


def test_write_npz_is_atomic(tmp_path, make_dataset, same_arrays, monkeypatch):
    path = tmp_path / "keep.npz"
    old = make_dataset([2, 2], seed=1)
    write_npz(old, path)

    def broken_savez(file, **arrays):
        file.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(d4rl_io.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        write_npz(make_dataset([5], seed=2), path)
    same_arrays(read_npz(path), old)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.npz"]


# ----------------------------------------------------------------------- load dispatch
def test_load_dataset_dispatches_by_extension_and_content(tmp_path, make_dataset, same_arrays):
    original = make_dataset([3, 4])
    h5 = write_d4rl(tmp_path / "a.h5", original)
    hdf5 = write_d4rl(tmp_path / "a.hdf5", original)
    odd_hdf5 = write_d4rl(tmp_path / "a.data", original)
    npz = write_npz(original, tmp_path / "b.npz")
    odd_npz = write_npz(original, tmp_path / "b.bin")
    for path in (h5, hdf5, odd_hdf5):
        loaded = load_dataset(path)
        assert loaded.metadata.provenance["format"] == "d4rl-hdf5"
        for name in ("observations", "next_observations", "terminals", "timeouts", "episode_starts"):
            np.testing.assert_array_equal(getattr(loaded, name), getattr(original, name))
    for path in (npz, odd_npz):
        same_arrays(load_dataset(str(path)), original)


def test_load_dataset_refuses_unknown_content(tmp_path):
    (tmp_path / "notes.txt").write_text("observations, actions")
    with pytest.raises(DatasetError, match=r"notes.txt' has extension '.txt' and is neither HDF5 nor a .npz"):
        load_dataset(tmp_path / "notes.txt")
