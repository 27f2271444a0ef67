"""Tabular logs (CSV, Parquet) into datasets: alignment, mappings, env-free npz, and every row problem
as one sentence naming the row and column, exit 2, nothing registered."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from offrl.cli import main
from offrl.data.d4rl_io import write_npz
from offrl.data.registry import datasets_root, resolve_dataset
from offrl.data.tabular_io import column_mapping, read_tabular
from dataset_helpers import make_random_dataset

HEADER = ["episode", "step", "obs_0", "obs_1", "torque", "reward", "done", "cut"]


def log_rows(lengths=(4, 3, 5), ends=("done", "cut", "none")) -> list[list]:
    """Episodes of distinct observations (row r has obs (r, -r)); `ends` flags each episode's last row."""
    rows, r = [], 0
    for episode, (length, end) in enumerate(zip(lengths, ends)):
        for step in range(length):
            last = step == length - 1
            rows.append([f"ep{episode}", step, float(r), float(-r), 0.1 * r - 0.5, float(r) / 10,
                         int(last and end == "done"), int(last and end == "cut")])
            r += 1
    return rows


def write_csv(path: Path, rows, header=HEADER) -> Path:
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


FLAGS = ["--obs-cols", "obs_*", "--action-cols", "torque", "--reward-col", "reward", "--episode-col", "episode",
         "--terminal-col", "done", "--timeout-col", "cut"]


def test_csv_rows_become_aligned_transitions_with_terminals_and_timeouts(tmp_path):
    path = write_csv(tmp_path / "logs.csv", log_rows())
    mapping = column_mapping({"observations": "obs_*", "actions": "torque", "reward": "reward", "episode": "episode",
                              "terminal": "done", "timeout": "cut"})
    dataset = read_tabular(path, mapping)
    # Episode 0 (rows 0-3) ends terminal: all 4 kept, last next_obs = its obs. Episode 1 (rows 4-6) is
    # cut: its last row has no successor and is dropped. Episode 2 (rows 7-11) is the file's end: same.
    np.testing.assert_array_equal(dataset.observations[:, 0], [0, 1, 2, 3, 4, 5, 7, 8, 9, 10])
    np.testing.assert_array_equal(dataset.next_observations[:, 0], [1, 2, 3, 3, 5, 6, 8, 9, 10, 11])
    np.testing.assert_array_equal(dataset.next_observations[:, 1], -dataset.next_observations[:, 0])
    np.testing.assert_array_equal(dataset.episode_starts, [0, 4, 6])
    assert dataset.terminals.tolist() == [False, False, False, True] + [False] * 6
    assert dataset.timeouts.tolist() == [False] * 5 + [True] + [False] * 3 + [True]
    np.testing.assert_allclose(dataset.actions[:, 0], 0.1 * dataset.observations[:, 0] - 0.5, atol=1e-6)
    np.testing.assert_allclose(dataset.rewards, dataset.observations[:, 0] / 10, atol=1e-6)
    assert dataset.metadata.env_id is None
    np.testing.assert_allclose(dataset.metadata.action_low, [-0.5])  # the data's min and max
    np.testing.assert_allclose(dataset.metadata.action_high, [0.6], atol=1e-6)


def test_cli_import_csv_yaml_mapping_and_parquet_register_the_same_dataset(tmp_path, capsys):
    path = write_csv(tmp_path / "logs.csv", log_rows())
    assert main(["datasets", "import", str(path), *FLAGS, "--action-low", "-1", "--action-high", "1"]) == 0
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("observations: [obs_0, obs_1]\nactions: torque\nreward: reward\nepisode: episode\n"
                       "terminal: done\ntimeout: cut\naction_low: [-1]\naction_high: [1]\n")
    assert main(["datasets", "import", str(path), "--name", "logs-yaml", "--mapping", str(mapping)]) == 0
    pyarrow = pytest.importorskip("pyarrow")
    import pyarrow.parquet as parquet

    rows = log_rows()
    table = pyarrow.table({name: [row[i] for row in rows] for i, name in enumerate(HEADER)})
    parquet.write_table(table, tmp_path / "logs.parquet")
    assert main(["datasets", "import", str(tmp_path / "logs.parquet"), "--name", "logs-pq", *FLAGS,
                 "--action-low", "-1", "--action-high", "1"]) == 0
    first, second, third = (resolve_dataset(name) for name in ("logs", "logs-yaml", "logs-pq"))
    for other in (second, third):
        for field in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts", "episode_starts"):
            np.testing.assert_array_equal(getattr(first, field), getattr(other, field))
    assert first.metadata.env_id is None and first.num_transitions == 10
    np.testing.assert_allclose(first.metadata.action_low, [-1.0])


def test_npz_without_env_id_imports(tmp_path):
    dataset = make_random_dataset([5, 6])
    write_npz(dataset, tmp_path / "plain.npz")
    assert main(["datasets", "import", str(tmp_path / "plain.npz")]) == 0
    assert resolve_dataset("plain").metadata.env_id is None


def _bad(rows=None, header=HEADER):
    rows = log_rows() if rows is None else rows
    return rows, header


def _edit(row_index, column, value):
    rows = log_rows()
    rows[row_index][HEADER.index(column)] = value
    return rows


BAD_LOGS = {
    "missing column": (log_rows(), [h if h != "reward" else "rew" for h in HEADER], ["no column 'reward'"]),
    "non-numeric": (_edit(2, "obs_1", "abc"), HEADER, ["line 4", "column 'obs_1'", "'abc' is not a number"]),
    "NaN action": (_edit(5, "torque", "nan"), HEADER, ["line 7", "column 'torque'", "finite action"]),
    "empty action": (_edit(5, "torque", ""), HEADER, ["line 7", "column 'torque'"]),
    "ragged row": ([*log_rows()[:3], log_rows()[3][:-2], *log_rows()[4:]], HEADER, ["line 5 has 6 fields", "header has 8"]),
    "episode not contiguous": ([*log_rows()[:2], *log_rows()[4:7], *log_rows()[2:4], *log_rows()[7:]], HEADER,
                               ["line 7", "column 'episode'", "'ep0' starts again", "contiguous"]),
    "end flag inside an episode": (_edit(1, "done", 1), HEADER, ["line 3", "column 'done'", "continues on line 4"]),
    "bad flag": (_edit(1, "cut", "maybe"), HEADER, ["line 3", "column 'cut'", "not a flag"]),
}


@pytest.mark.parametrize("case", sorted(BAD_LOGS))
def test_every_row_problem_is_one_sentence_exit_2_nothing_registered(case, tmp_path, capsys):
    rows, header, needles = BAD_LOGS[case]
    path = write_csv(tmp_path / "logs.csv", rows, header)
    assert main(["datasets", "import", str(path), *FLAGS]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and error.startswith("offrl: error: ")
    for needle in needles:
        assert needle in error, (needle, error)
    assert not (datasets_root() / "logs-v0").exists()


def test_action_outside_given_bounds_and_missing_mapping_keys(tmp_path, capsys):
    path = write_csv(tmp_path / "logs.csv", log_rows())
    assert main(["datasets", "import", str(path), *FLAGS, "--action-low", "-0.2", "--action-high", "1"]) == 2
    assert "line 2, column 'torque': action -0.5 is outside [-0.2, 1]" in capsys.readouterr().err
    assert main(["datasets", "import", str(path), "--obs-cols", "obs_*", "--reward-col", "reward"]) == 2
    assert "--action-cols" in capsys.readouterr().err
    assert not datasets_root().exists() or not any(datasets_root().iterdir())


def test_training_on_a_csv_directly_says_to_import_it_first(tmp_path, capsys):
    path = write_csv(tmp_path / "logs.csv", log_rows())
    run_dir = tmp_path / "run"
    assert main(["train", "bc", "--dataset", str(path), "--steps", "10", "--run-dir", str(run_dir)]) == 2
    error = capsys.readouterr().err
    assert "is a tabular log, which needs a column mapping" in error and "offrl datasets import" in error
    assert not run_dir.exists()
