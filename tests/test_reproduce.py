"""`offrl reproduce corl-gym`: the grid (presets, budgets, scaling), bad input, and one tiny end-to-end run."""

from __future__ import annotations

import pytest

from offrl.cli import main
from offrl.data.d4rl_io import write_npz
from offrl.data.registry import import_dataset
from offrl.sweep.reproduce import reproduction_spec

from reliability_helpers import pendulum_shaped_dataset


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_grid_starts_each_cell_from_its_preset_and_scales_the_budget():
    spec = reproduction_spec("corl-gym", ["td3bc", "sac_n", "rebrac"], ["hopper-medium-v2", "halfcheetah-medium-replay-v2"],
                             4, 1.0, None)
    trials = {(t["algorithm"], t["dataset"]): t for t in spec.trials()}
    assert len(trials) == 6 and spec.seeds == [0, 1, 2, 3]
    sac_n = trials[("sac_n", "d4rl/hopper-medium-v2")]
    assert sac_n["algorithm_config"]["num_critics"] == 500 and sac_n["train"]["steps"] == 3_000_000
    assert trials[("sac_n", "d4rl/halfcheetah-medium-replay-v2")]["algorithm_config"]["num_critics"] == 10
    rebrac = trials[("rebrac", "d4rl/halfcheetah-medium-replay-v2")]
    assert (rebrac["algorithm_config"]["actor_bc_coef"], rebrac["algorithm_config"]["critic_bc_coef"]) == (0.01, 0.001)
    assert all(t["train"]["eval_every"] == 5000 for t in trials.values())
    cheap = {(t["algorithm"], t["dataset"]): t for t in reproduction_spec(
        "corl-gym", ["td3bc", "sac_n"], ["hopper-medium-v2"], 4, 0.1, None).trials()}
    assert cheap[("td3bc", "d4rl/hopper-medium-v2")]["train"]["steps"] == 100_000
    assert cheap[("sac_n", "d4rl/hopper-medium-v2")]["train"]["steps"] == 300_000
    assert all(t["budget_scale"] == 0.1 for t in cheap.values())


@pytest.mark.parametrize("argv, needle", [
    (["--algos", "td3bc,iqll"], "closest: iql"),
    (["--datasets", "hopper-medium-v3"], "closest: hopper-medium-v2"),
    (["--algos", "spot"], "no entry for"),
    (["--seeds", "0"], "--seeds is 0"),
    (["--budget-scale", "2"], "--budget-scale is 2"),
    (["--algos", "td3bc", "--datasets", "hopper-medium-v2"], "offrl datasets download d4rl/hopper-medium-v2"),
    (["--algos", "td3bc", "--datasets", "hopper-medium-v2", "--resume"], "no reproduction to continue"),
])
def test_bad_input_is_one_sentence(capsys, argv, needle):
    code, _, err = run_cli(capsys, "reproduce", "corl-gym", *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert needle in err


def test_tiny_reproduction_runs_reports_and_resumes(capsys, tmp_path):
    """Pendulum-shaped data registered under a D4RL name (it evaluates in the Pendulum env the file
    records): BC at a ten-thousandth of CORL's budget (100 updates), one seed."""
    import_dataset(str(write_npz(pendulum_shaped_dataset(), tmp_path / "p.npz")), "d4rl/hopper-medium-v2")
    argv = ["reproduce", "corl-gym", "--algos", "bc", "--datasets", "hopper-medium-v2", "--seeds", "1",
            "--budget-scale", "0.0001", "--workers", "1", "--out", "repro", "--no-progress"]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, out + err
    assert "reduced budget: ×0.0001" in out
    report = (tmp_path / "repro" / "report.md").read_text()
    assert "## Published results: corl-gym — reduced budget (×0.0001" in report
    assert "| no verdict (100 of 1,000,000 updates) |" in report
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and "--resume" in err  # the directory holds a reproduction: continuing it is explicit
    code, out, err = run_cli(capsys, *argv, "--resume")
    assert code == 0 and "1 finished" in out, out + err
