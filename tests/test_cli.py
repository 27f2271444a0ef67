"""The `offrl` command: the happy path, --help, and one clear sentence for every bad input."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from offrl.algos import ALGORITHMS
from offrl.cli import main
from offrl.data.d4rl_io import write_npz
from offrl.train.offline import TrainConfig

from reliability_helpers import pendulum_shaped_dataset

FAST = ["--steps", "100", "--log-every", "50", "--eval-every", "100", "--eval-episodes", "2",
        "--hidden-dims", "32", "32", "--batch-size", "64", "--no-progress"]


@pytest.fixture
def shaped_dataset():
    """Random Pendulum-v1-shaped transitions with reference scores: enough for the command's
    plumbing, and far cheaper than recording Pendulum episodes."""
    return pendulum_shaped_dataset()


@pytest.fixture
def pendulum_npz(shaped_dataset, tmp_path):
    return str(write_npz(shaped_dataset, tmp_path / "pendulum.npz"))


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
    # --obs-noise: the same episodes (same seed) with perturbed observations give other returns.
    code, noisy, _ = run_cli(capsys, "evaluate", str(run_dir), "--episodes", "3", "--obs-noise", "1.0")
    assert code == 0 and noisy.split("return ")[1].split()[0] != out.split("return ")[1].split()[0]
    assert_one_sentence_error(*run_cli(capsys, "evaluate", str(run_dir), "--obs-noise", "-0.1")[::2], "--obs-noise is -0.1")


def test_datasets_info_reports_sizes_returns_and_end_flags(shaped_dataset, pendulum_npz, capsys):
    code, out, _ = run_cli(capsys, "datasets", "info", pendulum_npz)
    assert code == 0
    rows = {cells[0]: cells[1] for cells in (re.split(r"\s*│\s*", line.strip("│ ")) for line in out.splitlines()) if len(cells) == 2}
    assert rows["transitions"] == str(shaped_dataset.num_transitions)
    assert rows["terminals"] == str(int(shaped_dataset.terminals.sum())) != "0"
    assert rows["timeouts"] == str(int(shaped_dataset.timeouts.sum())) != "0"
    assert rows["ref_max_score"] == str(shaped_dataset.metadata.ref_max_score)


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


# ------------------------------------------------------------------------------ bad input
# README: "Bad input (a missing file, a missing key, NaN rewards, actions outside the action
# space, an unknown flag) ends with one sentence naming the file or field, exit code 2, and no
# run directory". Each case writes its input into the test's working directory and returns
# (extra arguments, words the sentence must contain).
def missing_file():
    return ["--dataset", "nope.hdf5"], ["nope.hdf5"]


def missing_key():
    with h5py.File("d4rl.hdf5", "w") as file:
        file["observations"] = np.zeros((10, 3), np.float32)
        file["actions"] = np.zeros((10, 1), np.float32)
        file["rewards"] = np.zeros(10, np.float32)
        file["terminals"] = np.zeros(10, bool)
    return ["--dataset", "d4rl.hdf5", "--env", "Pendulum-v1"], ["d4rl.hdf5", "timeouts"]


def nan_rewards():
    dataset = pendulum_shaped_dataset()
    rewards = dataset.rewards.copy()
    rewards[123] = np.nan
    np.savez("nan.npz", **{name: getattr(dataset, name) for name in ARRAYS}, actions=dataset.actions, rewards=rewards,
             action_low=dataset.metadata.action_low, action_high=dataset.metadata.action_high, env_id="Pendulum-v1")
    return ["--dataset", "nan.npz"], ["nan.npz", "rewards", "123"]


def actions_outside_the_action_space():
    dataset = pendulum_shaped_dataset()
    actions = dataset.actions.copy()
    actions[7, 0] = 2.5  # Pendulum's torque bound is 2
    np.savez("wide.npz", **{name: getattr(dataset, name) for name in ARRAYS}, actions=actions, rewards=dataset.rewards,
             action_low=dataset.metadata.action_low, action_high=dataset.metadata.action_high, env_id="Pendulum-v1")
    return ["--dataset", "wide.npz"], ["wide.npz", "actions", "row 7"]


def unknown_flag():
    write_npz(pendulum_shaped_dataset(), "good.npz")
    return ["--dataset", "good.npz", "--no-such-flag", "1"], ["--no-such-flag", "expected"]


ARRAYS = ("observations", "next_observations", "terminals", "timeouts")


@pytest.mark.parametrize("explicit_run_dir", [False, True], ids=["default-run-dir", "run-dir"])
@pytest.mark.parametrize("bad_input", [missing_file, missing_key, nan_rewards, actions_outside_the_action_space, unknown_flag])
def test_readme_bad_input_is_one_sentence_exit_2_and_no_run_directory(bad_input, explicit_run_dir, tmp_path, capsys):
    arguments, needles = bad_input()
    before = sorted(tmp_path.iterdir())  # the working directory: a default run would go to runs/ here
    run_dir = ["--run-dir", "run"] if explicit_run_dir else []
    code, out, err = run_cli(capsys, "train", "bc", *arguments, *run_dir, *FAST)
    assert_one_sentence_error(code, err, *needles)
    assert out == ""
    assert sorted(tmp_path.iterdir()) == before  # no runs/, no run


def test_actions_outside_the_action_space_train_with_clip_actions(capsys):
    arguments, _ = actions_outside_the_action_space()
    code, out, _ = run_cli(capsys, "train", "bc", *arguments, "--clip-actions", "--run-dir", "run", *FAST)
    assert code == 0 and "final return" in out


def test_not_hdf5(tmp_path, capsys):
    bad = tmp_path / "bad.hdf5"
    bad.write_text("this is not HDF5")
    code, _, err = run_cli(capsys, "datasets", "info", str(bad))
    assert_one_sentence_error(code, err, "bad.hdf5")


def test_empty_dataset(tmp_path, capsys):
    path = tmp_path / "empty.npz"
    np.savez(path, observations=np.zeros((0, 3)), actions=np.zeros((0, 1)), rewards=np.zeros(0),
             terminals=np.zeros(0, bool), timeouts=np.zeros(0, bool))
    code, _, err = run_cli(capsys, "train", "bc", "--dataset", str(path), "--env", "Pendulum-v1")
    assert_one_sentence_error(code, err, "empty")
    assert not (tmp_path / "runs").exists()


# argparse's own errors, one sentence each (not the usage block), naming the flag or choice.
@pytest.mark.parametrize("argv, needles", [
    (["train", "nosuchalgo", "--dataset", "x.npz"], ["nosuchalgo", "expected one of", "bc", "td3bc", "rlpd"]),
    (["frobnicate"], ["frobnicate", "expected one of", "train", "datasets"]),
    (["train", "bc", "--dataset", "x.npz", "--no-such-flag", "1"], ["--no-such-flag", "expected"]),
    (["train", "bc", "--dataset", "x.npz", "--batch-sise", "64"], ["--batch-sise", "expected"]),
    (["train"], ["offrl train", "missing ALGO", "expected"]),
    (["datasets", "info"], ["missing dataset", "expected"]),
    (["export", "run"], ["--out", "expected"]),  # (datasets import's --name became optional: the file's name)
    (["train", "bc", "--dataset", "x.npz", "--steps", "many"], ["--steps", "'many'", "expected an integer"]),
    (["train", "iql", "--dataset", "x.npz", "--expectile", "high"], ["--expectile", "'high'", "expected a number"]),
    (["train", "bc", "--dataset", "x.npz", "--hidden-dims"], ["--hidden-dims", "expected at least one argument"]),
    (["train", "bc", "--dataset", "x.npz", "--seed-axis", "pmap"], ["--seed-axis", "'pmap'", "expected one of", "vmap"]),
], ids=["unknown-algorithm", "unknown-command", "unknown-flag", "misspelt-flag", "missing-algorithm",
        "missing-positional", "missing-required-flag", "not-an-integer", "not-a-number", "missing-value", "bad-choice"])
def test_command_line_mistakes_are_one_sentence_and_exit_2(argv, needles, capsys):
    code, out, err = run_cli(capsys, *argv)
    assert_one_sentence_error(code, err, *needles)
    assert "usage:" not in err and out == ""
    assert not Path("runs").exists()


def test_bad_value_names_the_flag(tmp_path, capsys):
    write_npz(pendulum_shaped_dataset(), "good.npz")
    code, _, err = run_cli(capsys, "train", "iql", "--dataset", "good.npz", "--expectile", "1.5", "--run-dir", "run")
    assert_one_sentence_error(code, err, "--expectile")
    assert not (tmp_path / "run").exists()


def test_debug_shows_the_error_instead_of_the_sentence(capsys):
    from offrl.errors import OffrlInputError

    assert_one_sentence_error(*run_cli(capsys, "datasets", "info", "nope.npz")[::2], "nope.npz")
    with pytest.raises(OffrlInputError, match="nope.npz"):  # uncaught: Python prints the traceback
        main(["datasets", "info", "nope.npz", "--debug"])


def test_the_offrl_command_exits_2_with_one_line():
    """The installed entry point's exit code, not only `main`'s return value."""
    result = subprocess.run([sys.executable, "-m", "offrl.cli", "train", "bc", "--no-such-flag"], capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and "--no-such-flag" in result.stderr


# ---------------------------------------------------------------------- small things users see
def test_datasets_make_help_lists_levels_meanings_and_defaults(capsys):
    import inspect

    from offrl.suites import LEVELS, make_suite

    with pytest.raises(SystemExit) as exit_info:
        main(["datasets", "make", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    levels = help_text.split("\nlevels:\n")[1]
    for level in LEVELS:  # every level the recipe makes, each with what it means
        (line,) = [line for line in levels.splitlines() if line.split()[:1] == [level]]
        assert len(line.split()) > 3, line
    assert f"(default:{','.join(LEVELS)})" in "".join(help_text.split())  # help wraps lines
    # Every flag shows its default; the seed's is make_suite's own.
    options = help_text.split("options:")[1].split("\nlevels:")[0]
    entries = re.split(r"\n  (?=-)", options)[1:]
    flags = {entry.split()[0].rstrip(","): " ".join(entry.split()) for entry in entries}
    assert {"--levels", "--budget", "--size", "--seed", "--overwrite", "--no-progress", "--data-dir"} <= set(flags)
    for flag, text in flags.items():
        assert flag == "-h" or "(default:" in text, text
    assert f"(default: {inspect.signature(make_suite).parameters['seed'].default})" in flags["--seed"]
    assert "(default: 1000000)" in flags["--budget"] and "(default: 1000000)" in flags["--size"]


def test_progress_lines_end_with_the_message_not_the_source_line(capsys):
    from offrl.train.progress import TrainingProgress

    with TrainingProgress(total=10, enabled=True) as progress:
        progress.report_eval({"step": 5, "return_mean": -123.4})
        progress.advance(5, {})
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if "step 5: return -123.4" in line]
    assert line.rstrip().endswith("step 5: return -123.4"), line
    assert "progress.py" not in err


@pytest.mark.parametrize("name", ["mujoco/hopper/medium-v0", "D4RL/antmaze/umaze-v1"])
def test_a_dataset_name_with_slashes_gives_one_flat_run_directory(name, tmp_path, capsys):
    dataset = pendulum_shaped_dataset()
    write_npz(dataset.replace(metadata=dataclasses.replace(dataset.metadata, name=name)), "data.npz")
    code, out, err = run_cli(capsys, "train", "bc", "--dataset", "data.npz", "--steps", "10", "--log-every", "10",
                             "--eval-every", "0", "--eval-episodes", "1", "--checkpoint-every", "0", "--hidden-dims", "8",
                             "--no-progress")
    assert code == 0, err
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith(f"bc-{name.replace('/', '-')}-seed0-") and (run / "summary.json").is_file()
    assert f"run directory: {Path('runs') / run.name}" in out
