"""The `offrl` command: the happy path, --help, and one clear sentence for every bad input."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from offrl.algos import ALGORITHMS
from offrl.cli import main
from offrl.data.d4rl_io import write_npz
from offrl.train.offline import TrainConfig

FAST = ["--steps", "100", "--log-every", "50", "--eval-every", "100", "--eval-episodes", "2",
        "--hidden-dims", "32", "32", "--batch-size", "64", "--no-progress"]


@pytest.fixture
def pendulum_npz(pendulum_dataset, tmp_path):
    return str(write_npz(pendulum_dataset, tmp_path / "pendulum.npz"))


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_sentence_error(code, err, *needles):
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("offrl: error:") and "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_train_then_evaluate(pendulum_npz, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, out, _ = run_cli(capsys, "train", "td3bc", "--dataset", pendulum_npz, "--run-dir", str(run_dir), *FAST)
    assert code == 0
    assert "final normalized score:" in out and "best normalized score:" in out
    assert "dataset mean normalized return:" in out
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"
    # Flags reach the configs.
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["algorithm_config"]["hidden_dims"] == [32, 32] and saved["train"]["steps"] == 100

    code, out, _ = run_cli(capsys, "evaluate", str(run_dir), "--episodes", "3")
    assert code == 0 and "Pendulum-v1" in out and "normalized score:" in out


def test_datasets_info_reports_sizes_returns_and_end_flags(pendulum_dataset, pendulum_npz, capsys):
    code, out, _ = run_cli(capsys, "datasets", "info", pendulum_npz)
    assert code == 0
    assert str(pendulum_dataset.num_transitions) in out
    assert "timeouts" in out and "terminals" in out and "ref_max_score" in out
    assert f"{pendulum_dataset.metadata.ref_max_score}"[:6] in out


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_help_lists_every_hyperparameter_with_its_default(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", name, "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for config_class in (ALGORITHMS[name].Config, TrainConfig):
        for field in dataclasses.fields(config_class):
            if field.name == "env_id":
                assert "--env ENV_ID" in help_text
                continue
            assert "--" + field.name.replace("_", "-") in help_text, field.name
    default_widths = " ".join(map(str, ALGORITHMS[name].Config().hidden_dims))
    assert f"(default: {default_widths})" in " ".join(help_text.split())  # help wraps lines


def test_missing_file(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "bc", "--dataset", str(tmp_path / "nope.hdf5"), "--run-dir", str(tmp_path / "run"))
    assert_one_sentence_error(code, err, "nope.hdf5")
    assert not (tmp_path / "run").exists()


def test_not_hdf5(tmp_path, capsys):
    bad = tmp_path / "bad.hdf5"
    bad.write_text("this is not HDF5")
    code, _, err = run_cli(capsys, "datasets", "info", str(bad))
    assert_one_sentence_error(code, err, "bad.hdf5")


def test_missing_key(tmp_path, capsys):
    path = tmp_path / "d4rl.hdf5"
    with h5py.File(path, "w") as file:
        file["observations"] = np.zeros((10, 3), np.float32)
        file["actions"] = np.zeros((10, 1), np.float32)
        file["rewards"] = np.zeros(10, np.float32)
        file["terminals"] = np.zeros(10, bool)
    code, _, err = run_cli(capsys, "train", "bc", "--dataset", str(path), "--env", "Pendulum-v1", "--run-dir", str(tmp_path / "run"))
    assert_one_sentence_error(code, err, "timeouts")
    assert not (tmp_path / "run").exists()


def test_nan_reward(pendulum_dataset, tmp_path, capsys):
    broken = pendulum_dataset.replace(metadata=dataclasses.replace(pendulum_dataset.metadata))
    path = write_npz(broken, tmp_path / "nan.npz")
    with np.load(path) as arrays:
        contents = dict(arrays)
    contents["rewards"] = contents["rewards"].copy()
    contents["rewards"][123] = np.nan
    np.savez(path, **contents)
    code, _, err = run_cli(capsys, "train", "bc", "--dataset", str(path), "--run-dir", str(tmp_path / "run"))
    assert_one_sentence_error(code, err, "rewards", "123")


def test_action_outside_bounds_is_refused_unless_clipped(pendulum_dataset, tmp_path, capsys):
    actions = pendulum_dataset.actions.copy()
    actions[7, 0] = 2.5  # Pendulum's torque bound is 2
    path = tmp_path / "wide.npz"
    np.savez(path, observations=pendulum_dataset.observations, actions=actions, rewards=pendulum_dataset.rewards,
             next_observations=pendulum_dataset.next_observations, terminals=pendulum_dataset.terminals,
             timeouts=pendulum_dataset.timeouts, action_low=np.array([-2.0], np.float32),
             action_high=np.array([2.0], np.float32), env_id="Pendulum-v1")
    code, _, err = run_cli(capsys, "train", "bc", "--dataset", str(path), "--run-dir", str(tmp_path / "run"))
    assert_one_sentence_error(code, err, "actions", "row 7")
    assert not (tmp_path / "run").exists()
    code, out, _ = run_cli(capsys, "train", "bc", "--dataset", str(path), "--clip-actions", "--run-dir", str(tmp_path / "run"), *FAST)
    assert code == 0 and "final return" in out


def test_empty_dataset(tmp_path, capsys):
    path = tmp_path / "empty.npz"
    np.savez(path, observations=np.zeros((0, 3)), actions=np.zeros((0, 1)), rewards=np.zeros(0),
             terminals=np.zeros(0, bool), timeouts=np.zeros(0, bool))
    code, _, err = run_cli(capsys, "train", "bc", "--dataset", str(path), "--env", "Pendulum-v1")
    assert_one_sentence_error(code, err, "empty")


def test_unknown_algorithm_and_flag_exit_2(pendulum_npz, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "nosuchalgo", "--dataset", pendulum_npz])
    assert exit_info.value.code == 2
    assert "nosuchalgo" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "bc", "--dataset", pendulum_npz, "--no-such-flag", "1"])
    assert exit_info.value.code == 2
    assert "--no-such-flag" in capsys.readouterr().err


def test_bad_value_names_the_flag(pendulum_npz, tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "iql", "--dataset", pendulum_npz, "--expectile", "1.5", "--run-dir", str(tmp_path / "run"))
    assert_one_sentence_error(code, err, "--expectile")
    assert not (tmp_path / "run").exists()


def test_debug_shows_the_traceback(tmp_path):
    missing = str(tmp_path / "nope.npz")
    quiet = subprocess.run([sys.executable, "-m", "offrl.cli", "datasets", "info", missing], capture_output=True, text=True)
    loud = subprocess.run([sys.executable, "-m", "offrl.cli", "datasets", "info", missing, "--debug"], capture_output=True, text=True)
    assert quiet.returncode == 2 and "Traceback" not in quiet.stderr and "nope.npz" in quiet.stderr
    assert loud.returncode != 0 and "Traceback" in loud.stderr
