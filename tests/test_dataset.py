"""Dataset validation and bad dataset files: always a DatasetError naming what is wrong."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from offrl.data.d4rl_io import read_npz, write_npz
from offrl.data.dataset import Dataset, DatasetMetadata
from offrl.data.load import load_dataset
from offrl.errors import DatasetError, OffrlInputError

FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts", "episode_starts")


def fields_of(dataset: Dataset) -> dict:
    values = {name: getattr(dataset, name).copy() for name in FIELDS}
    values["metadata"] = dataset.metadata
    return values


# --------------------------------------------------------------------------- in memory
def test_valid_dataset_and_derived_views(make_dataset):
    dataset = make_dataset([3, 1, 4], ends=["terminal", "timeout", "none"])
    assert dataset.num_transitions == 8 and dataset.num_episodes == 3
    np.testing.assert_array_equal(dataset.episode_ends, [3, 4, 8])
    np.testing.assert_array_equal(dataset.episode_lengths, [3, 1, 4])
    expected_returns = [dataset.rewards[0:3].sum(), dataset.rewards[3], dataset.rewards[4:8].sum()]
    np.testing.assert_allclose(dataset.episode_returns(), expected_returns, rtol=1e-6)
    assert dataset.spec.observation_dim == 3 and dataset.spec.action_dim == 2
    np.testing.assert_array_equal(dataset.episode(2)["observations"], dataset.observations[4:8])


def test_error_is_a_user_input_error():
    assert issubclass(DatasetError, OffrlInputError) and issubclass(DatasetError, ValueError)


def test_empty_dataset(make_dataset):
    values = {name: value[:0] for name, value in fields_of(make_dataset([2])).items() if name != "metadata"}
    values["episode_starts"] = np.array([0])
    with pytest.raises(DatasetError, match="is empty"):
        Dataset(**values)


@pytest.mark.parametrize("field", ["actions", "rewards", "next_observations", "terminals", "timeouts"])
def test_mismatched_lengths(make_dataset, field):
    values = fields_of(make_dataset([3, 4]))
    values[field] = values[field][:-1]
    with pytest.raises(DatasetError, match=f"field '{field}' has 6 rows but 'observations' has 7"):
        Dataset(**values)


def test_mismatched_observation_width(make_dataset):
    values = fields_of(make_dataset([3, 4]))
    values["next_observations"] = values["next_observations"][:, :2]
    with pytest.raises(DatasetError, match="field 'next_observations' has shape"):
        Dataset(**values)


@pytest.mark.parametrize("field", ["observations", "next_observations", "actions", "rewards"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values(make_dataset, field, bad):
    values = fields_of(make_dataset([3, 4]))
    values[field][5] = bad
    with pytest.raises(DatasetError, match=f"field '{field}' holds a NaN or infinite value at row 5"):
        Dataset(**values)


def test_action_outside_bounds_refused_and_clip_actions_fixes_it(make_dataset, tmp_path):
    dataset = make_dataset([3, 4])
    values = fields_of(dataset)
    values["actions"][2, 1] = 1.25
    with pytest.raises(DatasetError, match=r"field 'actions' row 2 dimension 1 is 1.25, outside the action space \[-1, 1\]"):
        Dataset(**values)
    # Without known bounds, nothing is checked.
    unbounded = DatasetMetadata(action_low=None, action_high=None)
    assert Dataset(**{**values, "metadata": unbounded}).actions[2, 1] == np.float32(1.25)
    # A file carrying bounds: refused unless loaded with clip_actions=True.
    path = write_npz(dataset, tmp_path / "d.npz")
    with np.load(path) as archive:
        contents = dict(archive)
    contents["actions"] = values["actions"]
    np.savez(path, **contents)
    with pytest.raises(DatasetError, match="field 'actions' row 2 dimension 1"):
        load_dataset(path)
    clipped = load_dataset(path, clip_actions=True)
    assert clipped.actions[2, 1] == 1.0
    np.testing.assert_array_equal(np.delete(clipped.actions.ravel(), 5), np.delete(dataset.actions.ravel(), 5))


def test_tiny_rounding_outside_bounds_is_tolerated(make_dataset):
    values = fields_of(make_dataset([3]))
    values["actions"][0, 0] = 1.0 + 1e-6
    assert Dataset(**values).actions[0, 0] > 1.0


@pytest.mark.parametrize("flag", ["terminals", "timeouts"])
def test_end_flag_in_the_middle_of_an_episode(make_dataset, flag):
    values = fields_of(make_dataset([4, 3], ends=["none", "none"]))
    values[flag][1] = True
    with pytest.raises(DatasetError, match=r"transition 1 ends an episode \(terminal or timeout\) but is not the last step"):
        Dataset(**values)


def test_both_terminal_and_timeout(make_dataset):
    values = fields_of(make_dataset([4, 3], ends=["terminal", "timeout"]))
    values["timeouts"][3] = True
    with pytest.raises(DatasetError, match="transition 3 is marked both terminal and timeout"):
        Dataset(**values)


@pytest.mark.parametrize(
    ("starts", "message"),
    [([1, 4], "must begin with index 0"), ([0, 4, 4], "strictly increasing"), ([0, 9], "strictly increasing indices below 7")],
)
def test_bad_episode_starts(make_dataset, starts, message):
    values = fields_of(make_dataset([4, 3], ends=["none", "none"]))
    values["episode_starts"] = np.array(starts)
    with pytest.raises(DatasetError, match=message):
        Dataset(**values)


def test_observations_must_be_two_dimensional(make_dataset):
    values = fields_of(make_dataset([4]))
    values["observations"] = values["observations"][:, 0]
    with pytest.raises(DatasetError, match="field 'observations' has shape"):
        Dataset(**values)


def test_error_names_the_source(make_dataset):
    values = fields_of(make_dataset([3]))
    values["rewards"][0] = np.nan
    values["metadata"] = DatasetMetadata(source="/data/hopper.hdf5")
    with pytest.raises(DatasetError, match="^/data/hopper.hdf5: field 'rewards'"):
        Dataset(**values)


# ---------------------------------------------------------------------------- bad files
def _d4rl_file(path, n=6, **overrides):
    arrays = {
        "observations": np.zeros((n, 3), np.float32),
        "actions": np.zeros((n, 2), np.float32),
        "rewards": np.zeros(n, np.float32),
        "terminals": np.zeros(n, bool),
        "timeouts": np.zeros(n, bool),
        "next_observations": np.ones((n, 3), np.float32),
    }
    arrays.update(overrides)
    with h5py.File(path, "w") as file:
        for key, value in arrays.items():
            if value is not None:
                file.create_dataset(key, data=value)
    return path


def test_missing_path(tmp_path):
    missing = tmp_path / "nope.hdf5"
    with pytest.raises(DatasetError) as info:
        load_dataset(missing)
    assert str(info.value) == (
        f"Dataset file '{missing}' does not exist; expected a Minari dataset directory, "
        "a D4RL .hdf5 file or a .npz file."
    )


def test_missing_npz_file_via_reader(tmp_path):
    with pytest.raises(DatasetError, match=r"nope.npz' does not exist; expected a NumPy .npz file"):
        read_npz(tmp_path / "nope.npz")


def test_text_file_named_hdf5(tmp_path):
    path = tmp_path / "fake.hdf5"
    path.write_text("observations,actions\n1,2\n")
    with pytest.raises(DatasetError, match="fake.hdf5' is not an HDF5 file; expected a D4RL-layout HDF5 file"):
        load_dataset(path)


def test_text_file_named_npz(tmp_path):
    path = tmp_path / "fake.npz"
    path.write_text("not a zip")
    with pytest.raises(DatasetError, match="fake.npz' could not be read as a NumPy .npz archive"):
        load_dataset(path)


@pytest.mark.parametrize("key", ["observations", "actions", "rewards", "terminals", "timeouts"])
def test_missing_key_hdf5(tmp_path, key):
    path = _d4rl_file(tmp_path / "k.hdf5", **{key: None})
    with pytest.raises(DatasetError, match=f"k.hdf5' has no dataset '{key}'; expected D4RL keys"):
        load_dataset(path)


@pytest.mark.parametrize("key", ["observations", "actions", "rewards", "terminals", "timeouts"])
def test_missing_key_npz(tmp_path, key):
    arrays = {
        "observations": np.zeros((4, 3)),
        "actions": np.zeros((4, 2)),
        "rewards": np.zeros(4),
        "terminals": np.zeros(4, bool),
        "timeouts": np.zeros(4, bool),
    }
    del arrays[key]
    np.savez(tmp_path / "k.npz", **arrays)
    with pytest.raises(DatasetError, match=f"k.npz' has no array '{key}'"):
        load_dataset(tmp_path / "k.npz")


@pytest.mark.parametrize("key", ["actions", "rewards", "terminals", "timeouts", "next_observations"])
def test_mismatched_lengths_in_file(tmp_path, key):
    short = {"actions": np.zeros((5, 2)), "rewards": np.zeros(5), "terminals": np.zeros(5, bool), "timeouts": np.zeros(5, bool), "next_observations": np.zeros((5, 3))}
    path = _d4rl_file(tmp_path / "len.hdf5", **{key: short[key]})
    with pytest.raises(DatasetError, match=f"len.hdf5: field '{key}' has 5 rows but 'observations' has 6; expected equal lengths"):
        load_dataset(path)


def test_truncated_hdf5(tmp_path):
    path = _d4rl_file(tmp_path / "cut.hdf5", n=5000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="cut.hdf5' could not be read as HDF5"):
        load_dataset(path)


def test_corrupted_hdf5_header(tmp_path):
    path = _d4rl_file(tmp_path / "bad.hdf5")
    data = bytearray(path.read_bytes())
    data[8:200] = b"\xff" * 192  # keep the signature, destroy the superblock and root group
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="bad.hdf5' could not be read as HDF5"):
        load_dataset(path)


def test_corrupted_compressed_data_in_hdf5(tmp_path):
    """The file opens, but reading a damaged gzip chunk fails: still a DatasetError."""
    path = tmp_path / "gz.hdf5"
    rng = np.random.default_rng(0)
    _d4rl_file(path, n=5000, observations=None, next_observations=None)
    with h5py.File(path, "a") as file:
        file.create_dataset("observations", data=rng.normal(size=(5000, 3)).astype(np.float32), compression="gzip", chunks=(500, 3))
        offset = file["observations"].id.get_chunk_info(1).byte_offset
    data = bytearray(path.read_bytes())
    data[offset : offset + 200] = bytes(200)
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="gz.hdf5' could not be read as HDF5"):
        load_dataset(path)


def test_truncated_npz(tmp_path, make_dataset):
    path = write_npz(make_dataset([50, 50]), tmp_path / "cut.npz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="cut.npz' could not be read as a NumPy .npz archive"):
        load_dataset(path)


def test_directory_that_is_not_a_dataset(tmp_path):
    with pytest.raises(DatasetError, match="is not a Minari dataset directory"):
        load_dataset(tmp_path)


def test_nan_in_file_names_file_and_field(tmp_path):
    rewards = np.zeros(6, np.float32)
    rewards[4] = np.nan
    path = _d4rl_file(tmp_path / "nan.hdf5", rewards=rewards)
    with pytest.raises(DatasetError, match="nan.hdf5: field 'rewards' holds a NaN or infinite value at row 4"):
        load_dataset(path)
