"""Bad input at the boundary: one sentence naming the file, field or flag, exit code 2."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest

from offrl.cli import main
from offrl.data.d4rl_io import write_npz
from offrl.errors import DatasetError

from dataset_helpers import make_random_dataset
from reliability_helpers import pendulum_shaped_dataset


def one_sentence(code, err, *needles):
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip() and not line.startswith("offrl: warning:")]
    assert len(lines) == 1 and lines[0].startswith("offrl: error:") and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize("low, high, needle", [
    (np.zeros(3), np.ones(3), "shapes (3,) and (3,)"),
    (np.zeros(2), np.ones(4), "shapes (2,) and (4,)"),
    (np.ones(2), np.zeros(2), "low <= high"),
    (np.array([0.0, np.nan]), np.ones(2), "low <= high"),
])
def test_malformed_action_bounds_are_a_dataset_error(low, high, needle):
    good = make_random_dataset([4, 3])
    meta = dataclasses.replace(good.metadata, action_low=low, action_high=high)
    with pytest.raises(DatasetError) as info:
        good.replace(metadata=meta)
    assert needle in str(info.value)


FAST = ["--steps", "50", "--log-every", "50", "--eval-every", "0", "--eval-episodes", "1",
        "--hidden-dims", "32", "32", "--batch-size", "64", "--no-progress"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("finished")
    data = str(write_npz(pendulum_shaped_dataset(seed=0), directory / "data.npz"))
    other = str(write_npz(pendulum_shaped_dataset(seed=1), directory / "other.npz"))
    assert main(["train", "bc", "--dataset", data, "--run-dir", str(directory / "run"), *FAST]) == 0
    return directory / "run", data, other


def test_missing_dataset_flag(capsys):
    one_sentence(main(["train", "bc", "--steps", "10"]), capsys.readouterr().err, "--dataset")


def test_resume_refuses_another_dataset(finished_run, capsys):
    run, _, other = finished_run
    one_sentence(main(["train", "bc", "--resume", str(run), "--dataset", other, "--no-progress"]),
                 capsys.readouterr().err, "dataset differs", str(run))


def test_resume_refuses_a_changed_flag(finished_run, capsys):
    run, _, _ = finished_run
    one_sentence(main(["train", "bc", "--resume", str(run), "--batch-size", "128", "--no-progress"]),
                 capsys.readouterr().err, "batch_size", "128")
    one_sentence(main(["train", "bc", "--resume", str(run), "--steps", "500", "--no-progress"]),
                 capsys.readouterr().err, "train.steps")


def test_resume_refuses_another_algorithm_or_path(finished_run, tmp_path, capsys):
    run, _, _ = finished_run
    one_sentence(main(["train", "iql", "--resume", str(run)]), capsys.readouterr().err, "bc", "iql")
    one_sentence(main(["train", "bc", "--resume", str(tmp_path)]), capsys.readouterr().err, "not a run directory")
    one_sentence(main(["train", "bc", "--resume", str(run), "--run-dir", str(tmp_path)]), capsys.readouterr().err, "--run-dir")


def test_resuming_a_finished_run_trains_nothing(finished_run, capsys):
    run, _, _ = finished_run
    before = (run / "metrics.jsonl").read_text()
    assert main(["train", "bc", "--resume", str(run), "--no-progress"]) == 0
    assert "final normalized score" in capsys.readouterr().out
    assert (run / "metrics.jsonl").read_text() == before


def test_resume_with_no_valid_checkpoint_is_a_clear_error(finished_run, tmp_path, capsys):
    run = tmp_path / "broken"
    shutil.copytree(finished_run[0], run)
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "status": "running"}))
    for path in (run / "checkpoints").glob("step_*.msgpack"):
        path.write_bytes(path.read_bytes()[:64])
    code = main(["train", "bc", "--resume", str(run), "--no-progress"])
    err = capsys.readouterr().err
    one_sentence(code, err, "No valid checkpoint", "step_000000050.msgpack")
    assert err.startswith("offrl: warning: Checkpoint") and "step_000000050.msgpack' is corrupt" in err


def test_a_run_killed_before_its_first_checkpoint_restarts_from_step_zero(finished_run, tmp_path, capsys):
    from reliability_helpers import assert_same_run

    run = tmp_path / "early"
    shutil.copytree(finished_run[0], run)
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({"status": "running", "started_at": summary["started_at"]}))
    for path in (run / "checkpoints").iterdir():
        path.unlink()
    (run / "eval.jsonl").unlink()
    with open(run / "metrics.jsonl", "a") as file:
        file.write('{"step": 50, "actor_loss": 0.')  # killed mid-line
    assert main(["train", "bc", "--resume", str(run), "--no-progress"]) == 0
    assert "resumed from step 0" in capsys.readouterr().out
    assert_same_run(run, finished_run[0])
