"""Property-based tests of the dataset readers and writers (npz, D4RL HDF5, Minari).

Every input is either read exactly (arrays equal, bit for bit, to what was written, cast to
float32) or refused with a DatasetError; no other exception type escapes a reader.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import h5py
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataset_helpers import assert_aligned, assert_same_arrays, make_random_dataset
from offrl.data.d4rl_io import read_d4rl_hdf5, read_npz, write_npz
from offrl.data.dataset import Dataset
from offrl.errors import DatasetError

FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FLOAT_DTYPES = st.sampled_from([np.float16, np.float32, np.float64])


@st.composite
def layouts(draw, allow_unflagged_middle: bool = True):
    """Episode lengths (length-1 episodes likely) and how each ends; the last may be a trailing
    partial episode (no flag)."""
    lengths = draw(st.lists(st.integers(1, 6), min_size=1, max_size=5))
    ends = ["terminal", "timeout", "none"] if allow_unflagged_middle else ["terminal", "timeout"]
    kinds = [draw(st.sampled_from(ends)) for _ in lengths[:-1]]
    kinds.append(draw(st.sampled_from(["terminal", "timeout", "none"])))
    return lengths, kinds


def dataset_from(lengths, kinds, obs_dim, action_dim, seed) -> Dataset:
    return make_random_dataset(lengths, obs_dim=obs_dim, action_dim=action_dim, seed=seed, ends=kinds)


def read_or_refuse(reader, path):
    """The reader's Dataset, or None when it refused with DatasetError (anything else fails)."""
    try:
        return reader(path)
    except DatasetError:
        return None


# ------------------------------------------------------------------------------------ npz
@FUZZ
@given(layout=layouts(), obs_dim=st.integers(1, 4), action_dim=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_npz_writer_round_trip_is_exact(layout, obs_dim, action_dim, seed):
    original = dataset_from(*layout, obs_dim, action_dim, seed)
    with tempfile.TemporaryDirectory() as directory:
        loaded = read_npz(write_npz(original, Path(directory) / "data.npz"))
    assert_same_arrays(loaded, original)
    assert loaded.metadata.to_json() | {"source": None} == original.metadata.to_json() | {"source": None}


@st.composite
def raw_arrays(draw, d4rl_layout: bool):
    """Flat D4RL-layout arrays in assorted dtypes, sometimes with NaN/inf or huge values."""
    lengths, kinds = draw(layouts(allow_unflagged_middle=not d4rl_layout))
    n = sum(lengths)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    obs_dim, action_dim = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    obs_dtype, reward_dtype = draw(FLOAT_DTYPES), draw(FLOAT_DTYPES)
    rows = [rng.normal(size=(length + 1, obs_dim)) * 10 for length in lengths]
    observations = np.concatenate([r[:-1] for r in rows]).astype(obs_dtype)
    next_observations = np.concatenate([r[1:] for r in rows]).astype(obs_dtype)
    if draw(st.booleans()):
        actions = rng.integers(-3, 4, size=(n, action_dim)).astype(draw(st.sampled_from([np.int8, np.int32, np.int64])))
    else:
        actions = rng.uniform(-1, 1, size=(n, action_dim)).astype(draw(FLOAT_DTYPES))
    rewards = rng.normal(size=n).astype(reward_dtype)
    last = np.cumsum(lengths) - 1
    terminals, timeouts = np.zeros(n, bool), np.zeros(n, bool)
    terminals[last[[k == "terminal" for k in kinds]]] = True
    timeouts[last[[k == "timeout" for k in kinds]]] = True
    flag_dtype = draw(st.sampled_from([bool, np.uint8, np.float32]))
    arrays = {"observations": observations, "actions": actions, "rewards": rewards,
              "terminals": terminals.astype(flag_dtype), "timeouts": timeouts.astype(flag_dtype)}
    if draw(st.booleans()):
        arrays["next_observations"] = next_observations
    poison = draw(st.sampled_from([None, np.nan, np.inf, 1e39]))
    if poison is not None:
        name = draw(st.sampled_from(["observations", "rewards"]))
        arrays[name] = arrays[name].astype(np.float64)
        arrays[name].reshape(-1)[rng.integers(arrays[name].size)] = poison
    return arrays, lengths, kinds


def check_exact(loaded: Dataset, arrays: dict, lengths, kinds) -> None:
    """A file with next_observations keeps every row exactly; without, the rows kept are
    aligned and are rows of the file, in order."""
    n = sum(lengths)
    if "next_observations" in arrays:
        for name in ("observations", "actions", "next_observations"):
            np.testing.assert_array_equal(getattr(loaded, name), np.asarray(arrays[name]).astype(np.float32))
        np.testing.assert_array_equal(loaded.rewards, np.asarray(arrays["rewards"]).astype(np.float32).reshape(n))
        np.testing.assert_array_equal(loaded.terminals, arrays["terminals"].astype(bool))
        np.testing.assert_array_equal(loaded.timeouts, arrays["timeouts"].astype(bool))
        expected_starts = [0, *np.cumsum(lengths)[:-1]]
        if "none" in kinds[:-1]:  # unflagged episode ends merge episodes in a flat file
            assert set(loaded.episode_starts) <= set(expected_starts)
        else:
            np.testing.assert_array_equal(loaded.episode_starts, expected_starts)
    else:
        assert_aligned(loaded)
        source = np.asarray(arrays["observations"]).astype(np.float32)
        index = [int(np.flatnonzero(np.all(source == row, axis=1))[0]) for row in loaded.observations]
        assert index == sorted(index) and len(set(index)) == len(index)


@FUZZ
@given(generated=raw_arrays(d4rl_layout=False))
def test_npz_files_are_read_exactly_or_refused(generated):
    arrays, lengths, kinds = generated
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "raw.npz"
        if "next_observations" in arrays and "none" in kinds[:-1]:
            arrays = {**arrays, "episode_starts": np.array([0, *np.cumsum(lengths)[:-1]], np.int64)}
        np.savez(path, **arrays)
        loaded = read_or_refuse(read_npz, path)
    finite = all(np.all(np.isfinite(np.asarray(v, np.float64))) and np.all(np.abs(np.asarray(v, np.float64)) < 3e38)
                 for k, v in arrays.items() if k in ("observations", "rewards"))
    if loaded is None:
        assert not finite or "next_observations" not in arrays, "a well-formed file was refused"
        return
    assert finite or "next_observations" not in arrays  # without them, a poisoned dropped row is harmless
    check_exact(loaded, arrays, lengths, kinds)
    if "episode_starts" in arrays:
        np.testing.assert_array_equal(loaded.episode_starts, arrays["episode_starts"])


# ----------------------------------------------------------------------------- D4RL HDF5
def write_hdf5(path: Path, arrays: dict) -> Path:
    with h5py.File(path, "w") as file:
        for key, values in arrays.items():
            file.create_dataset(key, data=values)
    return path


@FUZZ
@given(generated=raw_arrays(d4rl_layout=True))
def test_d4rl_hdf5_files_are_read_exactly_or_refused(generated):
    arrays, lengths, kinds = generated
    with tempfile.TemporaryDirectory() as directory:
        loaded = read_or_refuse(read_d4rl_hdf5, write_hdf5(Path(directory) / "raw.hdf5", arrays))
    finite = all(np.all(np.isfinite(np.asarray(v, np.float64))) and np.all(np.abs(np.asarray(v, np.float64)) < 3e38)
                 for k, v in arrays.items() if k in ("observations", "rewards"))
    if loaded is None:
        # Refused: poisoned values, or (without next_observations) no row with a known successor.
        assert not finite or "next_observations" not in arrays, "a well-formed file was refused"
        return
    assert finite or "next_observations" not in arrays  # without them, a poisoned dropped row is harmless
    check_exact(loaded, arrays, lengths, kinds)


@FUZZ
@given(layout=layouts(allow_unflagged_middle=False), seed=st.integers(0, 2**16),
       damage=st.sampled_from(["flip", "truncate", "zero-run"]), where=st.floats(0, 1), count=st.integers(1, 16))
def test_corrupted_hdf5_is_read_or_refused_with_a_dataset_error(layout, seed, damage, where, count):
    original = dataset_from(*layout, 3, 2, seed)
    arrays = {name: getattr(original, name) for name in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")}
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as directory:
        path = write_hdf5(Path(directory) / "data.hdf5", arrays)
        data = bytearray(path.read_bytes())
        start = int(where * (len(data) - 1))
        if damage == "truncate":
            data = data[:start]
        elif damage == "flip":
            for position in rng.integers(0, len(data), size=count):
                data[position] ^= int(rng.integers(1, 256))
        else:
            data[start:start + count * 64] = bytes(len(data[start:start + count * 64]))
        path.write_bytes(bytes(data))
        loaded = read_or_refuse(read_d4rl_hdf5, path)
    if loaded is not None:  # the damage missed the structure (or only changed values): still a valid dataset
        assert isinstance(loaded, Dataset)
        loaded.validate()


# --------------------------------------------------------------------------------- Minari
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layout=layouts(), obs_dim=st.integers(1, 3), action_dim=st.integers(1, 2), seed=st.integers(0, 2**16),
       damage=st.sampled_from([None, "flip-data", "truncate-data", "flip-metadata"]))
def test_minari_round_trip_is_exact_and_damage_is_refused(layout, obs_dim, action_dim, seed, damage):
    from offrl.data.minari_io import read_minari, write_minari

    original = dataset_from(*layout, obs_dim, action_dim, seed)
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        written = write_minari(original, "fuzz/data-v0", root=root)
        if damage is None:
            loaded = read_minari(written)
            assert_same_arrays(loaded, original)
            return
        target = written / "data" / ("metadata.json" if damage == "flip-metadata" else "main_data.hdf5")
        data = bytearray(target.read_bytes())
        rng = np.random.default_rng(seed)
        if damage == "truncate-data":
            data = data[: int(rng.integers(0, len(data)))]
        else:
            for position in rng.integers(0, len(data), size=8):
                data[position] ^= int(rng.integers(1, 256))
        target.write_bytes(bytes(data))
        loaded = read_or_refuse(read_minari, written)
        if loaded is not None:
            loaded.validate()
