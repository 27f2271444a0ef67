"""Per-step costs (safe offline RL, DSRL layout) through Dataset and every reader and writer."""

from __future__ import annotations

import re

import h5py
import minari
import numpy as np
import pytest

from dataset_helpers import assert_aligned, assert_same_arrays, make_random_dataset
from offrl.cli import main
from offrl.data.d4rl_io import read_d4rl_hdf5, read_npz, write_npz
from offrl.data.dataset import Dataset
from offrl.data.dsrl_io import DSRL_KEYS, write_dsrl_hdf5
from offrl.data.filtering import filter_top_episodes
from offrl.data.fingerprint import dataset_fingerprint
from offrl.data.minari_io import read_minari, write_minari
from offrl.data.registry import import_dataset, resolve_dataset
from offrl.errors import DatasetError


def with_costs(dataset: Dataset, seed: int = 1) -> Dataset:
    """`dataset` with costs that identify their row: cost[t] = t + 0.5 (any shift is visible)."""
    return dataset.replace(costs=np.arange(dataset.num_transitions, dtype=np.float32) + 0.5)


def costed(lengths=(4, 3, 5, 2), ends=("terminal", "timeout", "terminal", "none")) -> Dataset:
    return with_costs(make_random_dataset(list(lengths), ends=list(ends)))


def assert_same_costs(actual: Dataset, expected: Dataset) -> None:
    assert_same_arrays(actual, expected)
    assert actual.costs is not None and actual.costs.dtype == np.float32
    np.testing.assert_array_equal(actual.costs, expected.costs)


# ---------------------------------------------------------------------------- Dataset
def test_episode_costs_sum_each_episode():
    dataset = costed()
    # Rows 0-3, 4-6, 7-11, 12-13 with cost t + 0.5.
    np.testing.assert_allclose(dataset.episode_costs(), [0.5 + 1.5 + 2.5 + 3.5, 4.5 + 5.5 + 6.5,
                                                         7.5 + 8.5 + 9.5 + 10.5 + 11.5, 12.5 + 13.5])
    assert make_random_dataset([3, 2]).episode_costs() is None
    assert set(dataset.episode(1)) >= {"costs"} and list(dataset.episode(1)["costs"]) == [4.5, 5.5, 6.5]


@pytest.mark.parametrize("costs, needle", [(np.zeros(13), "'costs' has shape (13,)"), (np.zeros((14, 2)), "'costs' has shape (14, 2)"),
                                           (np.r_[np.zeros(13), np.nan], "'costs' holds a NaN")])
def test_bad_costs_are_refused_naming_the_field(costs, needle):
    with pytest.raises(DatasetError, match=re.escape(needle)):
        make_random_dataset([4, 3, 5, 2]).replace(costs=costs)


def test_from_flat_drops_cost_rows_with_the_transitions_it_drops():
    """Without next_observations the rows without a successor go; their costs go with them."""
    observations = np.arange(8, dtype=np.float32)[:, None]
    dataset = Dataset.from_flat(observations, np.zeros((8, 1)), np.arange(8) * 10.0,
                                terminals=np.eye(8, dtype=bool)[2], timeouts=np.eye(8, dtype=bool)[5],
                                costs=np.arange(8) + 100.0)
    np.testing.assert_array_equal(dataset.observations[:, 0], [0, 1, 2, 3, 4, 6])
    np.testing.assert_array_equal(dataset.costs, [100, 101, 102, 103, 104, 106])
    with pytest.raises(DatasetError, match="field 'costs' has 7 rows but 'observations' has 8"):
        Dataset.from_flat(observations, np.zeros((8, 1)), np.zeros(8), np.zeros(8), np.zeros(8), costs=np.zeros(7))


def test_top_episode_filter_keeps_each_rows_cost():
    dataset = costed()
    kept = filter_top_episodes(dataset, 0.5)
    rows = np.concatenate([np.arange(s, e) for s, e in zip(dataset.episode_starts, dataset.episode_ends)
                           if dataset.rewards[s:e].sum() >= np.sort(dataset.episode_returns())[-2]])
    np.testing.assert_array_equal(kept.costs, dataset.costs[rows])
    np.testing.assert_array_equal(kept.observations, dataset.observations[rows])


def test_fingerprint_sees_costs_and_leaves_cost_free_datasets_unchanged():
    plain = make_random_dataset([4, 3])
    with_zero = plain.replace(costs=np.zeros(7))
    with_one = plain.replace(costs=np.eye(7)[3])
    prints = {dataset_fingerprint(d)["sha256"] for d in (plain, with_zero, with_one)}
    assert len(prints) == 3


# ---------------------------------------------------------------------------- readers/writers
def test_npz_round_trip_keeps_costs(tmp_path):
    original = costed()
    loaded = read_npz(write_npz(original, tmp_path / "c.npz"))
    assert_same_costs(loaded, original)
    assert read_npz(write_npz(make_random_dataset([3, 2]), tmp_path / "plain.npz")).costs is None


def test_dsrl_hdf5_round_trip_keeps_costs_and_the_layout(tmp_path):
    original = costed()
    path = write_dsrl_hdf5(original, tmp_path / "safe.hdf5")
    with h5py.File(path) as file:
        assert set(DSRL_KEYS) <= set(file.keys())
    loaded = read_d4rl_hdf5(path)
    np.testing.assert_array_equal(loaded.costs, original.costs)
    np.testing.assert_array_equal(loaded.observations, original.observations)
    np.testing.assert_array_equal(loaded.episode_starts, original.episode_starts)
    np.testing.assert_array_equal(loaded.terminals, original.terminals)
    assert_aligned(loaded)
    assert loaded.metadata.provenance["format"] == "dsrl-hdf5"
    assert loaded.metadata.ref_max_score == original.metadata.ref_max_score


def test_dsrl_file_without_next_observations_keeps_costs_aligned(tmp_path):
    """A hand-written DSRL-style file, column (n, 1) costs as some writers store them."""
    path = tmp_path / "hand.hdf5"
    with h5py.File(path, "w") as file:
        file["observations"] = np.arange(8, dtype=np.float32)[:, None]
        file["actions"] = np.zeros((8, 1), np.float32)
        file["rewards"] = np.arange(8, dtype=np.float32)
        file["costs"] = (np.arange(8, dtype=np.float32) * 2)[:, None]
        file["terminals"] = np.eye(8, dtype=bool)[2]
        file["timeouts"] = np.eye(8, dtype=bool)[5]
    loaded = read_d4rl_hdf5(path)
    np.testing.assert_array_equal(loaded.costs, 2 * loaded.observations[:, 0])


def test_dsrl_file_with_a_short_cost_column_is_refused(tmp_path):
    path = write_dsrl_hdf5(costed(), tmp_path / "short.hdf5")
    with h5py.File(path, "r+") as file:
        del file["costs"]
        file["costs"] = np.zeros(5, np.float32)
    with pytest.raises(DatasetError, match="'costs' has 5 rows but 'observations' has 14"):
        read_d4rl_hdf5(path)


def test_minari_round_trip_keeps_costs_and_minari_opens_it(tmp_path, minari_root):
    original = costed()
    path = write_minari(original, "offrl/safe-test-v0")
    assert_same_costs(read_minari(path), original)
    opened = minari.load_dataset("offrl/safe-test-v0")
    episodes = list(opened.iterate_episodes())
    assert [len(e.infos["cost"]) for e in episodes] == [len(e.rewards) + 1 for e in episodes]
    np.testing.assert_array_equal(episodes[1].infos["cost"], [0.0, 4.5, 5.5, 6.5])  # reset, then steps 4-6


def test_minari_episodes_split_at_a_discontinuity_keep_their_costs(minari_root):
    original = costed(lengths=(6, 4), ends=("timeout", "terminal"))
    next_observations = original.next_observations.copy()
    next_observations[2] += 1.0  # row 2's successor is not row 3: written as two Minari episodes
    original = original.replace(next_observations=next_observations)
    with pytest.warns(UserWarning, match="separate Minari episodes"):
        path = write_minari(original, "offrl/split-test-v0")
    loaded = read_minari(path)
    np.testing.assert_array_equal(loaded.costs, original.costs)


def test_registry_import_keeps_costs(tmp_path):
    original = costed()
    write_dsrl_hdf5(original, tmp_path / "safe.hdf5")
    import_dataset(str(tmp_path / "safe.hdf5"), "safe-import", data_dir=str(tmp_path / "data"))
    loaded = resolve_dataset("safe-import", data_dir=str(tmp_path / "data"))
    np.testing.assert_array_equal(loaded.costs, original.costs)


# ---------------------------------------------------------------------------- CLI
def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_datasets_info_shows_cost_statistics(tmp_path, capsys):
    path = write_npz(costed(), tmp_path / "c.npz")
    code, out, _ = run_cli(capsys, "datasets", "info", str(path))
    assert code == 0
    rows = {cells[0]: cells[1] for cells in (re.split(r"\s*│\s*", line.strip("│ ")) for line in out.splitlines()) if len(cells) == 2}
    assert rows["total cost"] == "98"  # sum of t + 0.5 for t < 14
    assert rows["episode cost"] == "min 8.0, mean 24.5, max 47.5"
    code, out, _ = run_cli(capsys, "datasets", "info", str(write_npz(make_random_dataset([3, 2]), tmp_path / "p.npz")))
    assert code == 0 and "total cost" not in out


def test_dsrl_file_with_a_wrong_length_cost_column_is_one_sentence_exit_2(tmp_path, capsys):
    path = write_dsrl_hdf5(costed(), tmp_path / "short.hdf5")
    with h5py.File(path, "r+") as file:
        del file["costs"]
        file["costs"] = np.zeros(20, np.float32)
    code, _, err = run_cli(capsys, "datasets", "info", str(path))
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "'costs' has 20 rows" in lines[0] and "Traceback" not in err
