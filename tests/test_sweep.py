"""Sweeps: spec validation and expansion, the local executor with a failing and a killed trial,
resuming (the killed trial ends equal to an uninterrupted one), refusing a changed spec,
selection, and `offrl bench`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from offrl.errors import ConfigError
from sweep_helpers import (
    TRAIN,
    assert_equals_uninterrupted,
    assert_left_as_killed,
    pendulum_shaped_npz,
    read_events,
    stall_trial,
    tiny_spec_text,
    write_spec,
)


# ------------------------------------------------------------------------- spec checks
def spec_error(tmp_path: Path, text: str) -> str:
    from offrl.sweep import load_spec

    with pytest.raises(ConfigError) as caught:
        load_spec(write_spec(tmp_path / "bad.yaml", text))
    message = str(caught.value)
    assert "bad.yaml" in message, message
    return message


@pytest.mark.parametrize("text, expected", [
    ("algorithms: [bc]\ndatasets: [default]\nsedes: [0]\n", "unknown key 'sedes'"),
    ("algorithms: [bc, nope]\ndatasets: [default]\n", "algorithms[1] is 'nope'"),
    ("algorithms: [bc]\n", "'datasets' is missing"),
    ("algorithms: [bc]\ndatasets: [default]\ngrid: {bc: {learning_rat: [0.1]}}\n", "unknown hyperparameter 'learning_rat'"),
    ("algorithms: [bc]\ndatasets: [default]\ngrid: {td3bc: {alpha: [1.0]}}\n", "'grid.td3bc' names an algorithm that is not in"),
    ("algorithms: [bc]\ndatasets: [default]\ngrid: {bc: {batch_size: [64, big]}}\n", "'grid.bc.batch_size[1]' is 'big'; expected an integer"),
    ("algorithms: [bc]\ndatasets: [default]\ngrid: {bc: {batch_size: 64}}\n", "expected a non-empty list of values"),
    ("algorithms: [bc]\ndatasets: [default]\nconfig: {bc: {hidden_dims: 32}}\n", "'config.bc.hidden_dims' is 32; expected a list of integers"),
    ("algorithms: [bc]\ndatasets: [default]\ntrain: {seed: 3}\n", "'train.seed' is not allowed"),
    ("algorithms: [bc]\ndatasets: [default]\ntrain: {steps: 0}\n", "--steps is 0"),
    ("algorithms: [bc]\ndatasets: [default]\ntrain: {stepz: 10}\n", "unknown key 'stepz' in 'train'"),
    ("algorithms: [bc]\ndatasets: [default]\nseeds: [0, 0]\n", "lists 0 twice"),
    ("algorithms: [bc]\ndatasets: [default]\nsearch: {kind: bayes}\n", "'search.kind' is 'bayes'"),
    ("algorithms: [bc]\ndatasets: [default]\nsearch: {kind: random, trials: 2, space: {bc: {batch_size: {uniform: [1, 2]}}}}\n",
     "expected a float hyperparameter"),
    ("algorithms: [bc]\ndatasets: [default]\nselection: {criterion: final}\n", "'selection.criterion' is 'final'"),
    ("algorithms: [bc\n", "is not valid YAML at line"),
    ("algorithms: [bc]\ndatasets: [default]\nconfig: {bc: {batch_size: 64}}\ngrid: {bc: {batch_size: [32]}}\n",
     "'config.bc.batch_size' and 'grid.bc.batch_size' both set"),
])
def test_spec_errors_name_the_file_and_key(tmp_path, text, expected):
    assert expected in spec_error(tmp_path, text)


def test_grid_expansion_ids_hash_and_paths(tmp_path):
    from offrl.sweep import load_spec

    (tmp_path / "data.npz").write_bytes(b"")  # only its existence matters to the spec
    text = """
algorithms: [bc, td3bc]
datasets: [data.npz, default]
seeds: 3
grid:
  bc: {learning_rate: [1e-3, 3.0e-4], batch_size: [64, 128]}
  td3bc: {alpha: [2.5]}
"""
    spec = load_spec(write_spec(tmp_path / "a.yaml", text))
    trials = spec.trials()
    assert len(trials) == (4 + 1) * 2
    assert len({t["id"] for t in trials}) == len(trials)
    assert spec.seeds == [0, 1, 2]
    # A relative dataset path is read relative to the spec file, wherever the command runs.
    assert spec.datasets[0] == str((tmp_path / "data.npz").resolve())
    bc = [t for t in trials if t["algorithm"] == "bc"]
    assert {(t["hyperparameters"]["learning_rate"], t["hyperparameters"]["batch_size"]) for t in bc} == {
        (1e-3, 64), (1e-3, 128), (3e-4, 64), (3e-4, 128)}  # "1e-3" (a YAML string) is read as a number
    for trial in bc:
        assert trial["algorithm_config"]["learning_rate"] == trial["hyperparameters"]["learning_rate"]

    # Same content, other key order and name: same hash and ids; a changed value: another hash.
    reordered = "name: other\ngrid:\n  td3bc: {alpha: [2.5]}\n  bc: {batch_size: [64, 128], learning_rate: [1e-3, 3.0e-4]}\n" \
                "seeds: [0, 1, 2]\ndatasets: [data.npz, default]\nalgorithms: [bc, td3bc]\n"
    again = load_spec(write_spec(tmp_path / "b.yaml", reordered))
    assert again.hash == spec.hash
    assert [t["id"] for t in again.trials()] == [t["id"] for t in trials]
    changed = load_spec(write_spec(tmp_path / "c.yaml", text.replace("alpha: [2.5]", "alpha: [2.0]")))
    assert changed.hash != spec.hash
    assert [t["id"] for t in changed.trials() if t["algorithm"] == "bc"] == [t["id"] for t in bc]


def test_example_spec_is_valid():
    from offrl.sweep import load_spec

    spec = load_spec(Path(__file__).parent.parent / "examples" / "sweep.yaml")
    trials = spec.trials()
    assert len(trials) == 1 + 3  # bc with defaults, td3bc with three alphas
    assert sorted(t["hyperparameters"].get("alpha", 0) for t in trials) == [0, 1.0, 2.5, 5.0]


def test_random_search_is_reproducible_and_in_range(tmp_path):
    from offrl.sweep import load_spec

    text = """
algorithms: [td3bc]
datasets: [default]
grid: {td3bc: {batch_size: [128, 256]}}
search:
  kind: random
  trials: 12
  seed: SEED
  space:
    td3bc:
      alpha: {uniform: [1.0, 4.0]}
      actor_learning_rate: {log_uniform: [1.0e-5, 1.0e-3]}
      policy_freq: {int_uniform: [1, 3]}
"""
    first = load_spec(write_spec(tmp_path / "a.yaml", text.replace("SEED", "0"))).trials()
    second = load_spec(write_spec(tmp_path / "b.yaml", text.replace("SEED", "0"))).trials()
    other = load_spec(write_spec(tmp_path / "c.yaml", text.replace("SEED", "1"))).trials()
    assert [t["hyperparameters"] for t in first] == [t["hyperparameters"] for t in second]
    assert [t["hyperparameters"] for t in first] != [t["hyperparameters"] for t in other]
    points = [t["hyperparameters"] for t in first]
    assert len(points) == 12
    assert all(1.0 <= p["alpha"] <= 4.0 and 1e-5 <= p["actor_learning_rate"] <= 1e-3 for p in points)
    assert {p["policy_freq"] for p in points} <= {1, 2, 3} and {p["batch_size"] for p in points} <= {128, 256}
    rates = np.log10([p["actor_learning_rate"] for p in points])
    assert rates.min() < -4 < rates.max()  # spread over the decades, not bunched at the top


def test_cli_reports_a_bad_spec_with_exit_code_2(tmp_path, capsys):
    from offrl.cli import main

    spec = write_spec(tmp_path / "bad.yaml", "algorithms: [bc]\ndatasets: [default]\nseeds: [-1]\n")
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "bad.yaml" in error and "seeds[0] is -1" in error and "Traceback" not in error
    assert not (tmp_path / "out").exists()
    assert main(["bench", "--algos", "bc,nope", "--datasets", "default", "--out", str(tmp_path / "b")]) == 2
    assert "--algos names 'nope'" in capsys.readouterr().err


def test_ray_engine_without_ray_says_how_to_install(tmp_path, monkeypatch):
    import sys

    from offrl.sweep import run_sweep

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if not installed
    spec = write_spec(tmp_path / "s.yaml", "algorithms: [bc]\ndatasets: [default]\n")
    with pytest.raises(ConfigError, match=r"pip install 'offrl\[ray\]'"):
        run_sweep(spec, out=tmp_path / "out", engine="ray", echo=None)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- local executor, end to end
def expected_selection(sweep_dir: Path, trial_ids: list[str]) -> tuple[str, dict[str, float]]:
    """Best trial by the mean validation normalised score over seeds, read from trial.json files."""
    criteria = {}
    for trial_id in trial_ids:
        record = json.loads((sweep_dir / "trials" / trial_id / "trial.json").read_text())
        per_seed = record["validation"]["per_seed"]
        assert sorted(per_seed) == ["0", "1"]
        criteria[trial_id] = float(np.mean([entry["normalized_score"] for entry in per_seed.values()]))
    return max(criteria, key=criteria.get), criteria


def test_local_sweep_with_failed_and_killed_trials_resumes(tmp_path, monkeypatch):
    from offrl.sweep import load_spec, run_sweep, select_best
    from offrl.sweep.trial import STALL_AFTER_STEP_ENV

    pendulum_shaped_npz(tmp_path / "data.npz")
    spec = write_spec(tmp_path / "tiny.yaml", tiny_spec_text("[0, 32, 64]"))
    out = tmp_path / "sweep"
    # The batch-32 trial is killed just after a checkpoint, like a machine going down mid-run.
    killed = next(t["id"] for t in load_spec(spec).trials() if t["hyperparameters"]["batch_size"] == 32)
    stall_trial(monkeypatch, killed)
    first = run_sweep(spec, out=out, workers=2, echo=None)
    assert_left_as_killed(out / "trials" / killed)
    index = json.loads((out / "sweep.json").read_text())
    ids = sorted(index["trials"])
    bad = next(i for i in ids if index["trials"][i]["hyperparameters"]["batch_size"] == 0)
    other = next(i for i in ids if i not in (bad, killed))
    assert first.counts == {"finished": 1, "failed": 1, "interrupted": 1}
    assert "SIGKILL" in first.problems[killed]
    assert "--batch-size is 0" in first.problems[bad] and bad in first.problems[bad]
    assert json.loads((out / "sweep.json").read_text())["trials"][killed]["status"] == "interrupted"
    kept = {path: path.read_bytes() for path in (out / "trials" / other).rglob("*") if path.is_file()}

    # Rerun: the finished trial is skipped, the failed one runs (and fails) again, the killed
    # one continues from its checkpoint and finishes.
    events_before = len(read_events(out))
    second = run_sweep(spec, out=out, workers=2, echo=None)
    assert second.skipped == [other] and sorted(second.ran) == sorted([bad, killed])
    assert second.counts == {"finished": 2, "failed": 1} and list(second.problems) == [bad]
    new_events = read_events(out)[events_before:]
    assert sorted(e["trial"] for e in new_events if e["event"] == "started") == sorted([bad, killed])
    assert {path: path.read_bytes() for path in (out / "trials" / other).rglob("*") if path.is_file()} == kept
    for seed in (0, 1):
        run = out / "trials" / killed / f"seed_{seed}"
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "finished"
        assert summary["resumed_from_steps"][0] >= TRAIN["checkpoint_every"]  # continued, not restarted
        steps = [json.loads(line)["step"] for line in (run / "eval.jsonl").read_text().splitlines()]
        assert steps == [300, 600]
        config = json.loads((run / "config.json").read_text())
        assert config["train"]["seed"] == seed and config["algorithm_config"]["batch_size"] in (32, 64)
    for trial_id in ids:
        assert json.loads((out / "trials" / trial_id / "trial.json").read_text())["spec_hash"] == index["spec_hash"]
    # Exact: the killed and resumed trial equals the same trial run without interruption.
    monkeypatch.delenv(STALL_AFTER_STEP_ENV)  # else the uninterrupted reference would stall too
    assert_equals_uninterrupted(out, killed, tmp_path / "reference")

    # Selection: the highest mean validation score wins; test scores are reported beside it.
    best, criteria = expected_selection(out, [killed, other])
    selection = select_best(out)
    assert json.loads((out / "selection.json").read_text()) == selection
    (group,) = selection["groups"]
    assert group["best"]["trial"] == best
    assert group["best"]["criterion"] == pytest.approx(criteria[best])
    finals = [json.loads((out / "trials" / best / f"seed_{s}" / "summary.json").read_text())["final_normalized_score"]
              for s in (0, 1)]
    assert group["best"]["test_final_mean"] == pytest.approx(np.mean(finals))
    assert {c["trial"]: bool(c.get("ineligible")) for c in group["candidates"]} == {bad: True, killed: False, other: False}

    # A changed spec never mixes into this directory.
    index_bytes = (out / "sweep.json").read_bytes()
    changed = write_spec(tmp_path / "changed.yaml", tiny_spec_text("[0, 32, 64]", {**TRAIN, "steps": 1500}))
    with pytest.raises(ConfigError, match=r"different spec .*changed: train\.steps"):
        run_sweep(changed, out=out, echo=None)
    assert (out / "sweep.json").read_bytes() == index_bytes


def test_bench_runs_a_grid_and_resumes(tmp_path, capsys):
    from offrl.cli import main

    data = pendulum_shaped_npz(tmp_path / "data.npz")
    out = tmp_path / "bench"
    arguments = ["bench", "--algos", "bc", "--datasets", str(data), "--seeds", "2", "--steps", "200",
                 "--eval-every", "100", "--eval-episodes", "1", "--log-every", "100", "--out", str(out)]
    assert main(arguments) == 0
    printed = capsys.readouterr().out
    assert f"offrl report {out}" in printed and "1 finished" in printed
    index = json.loads((out / "sweep.json").read_text())
    (trial_id,) = index["trials"]
    assert index["spec"]["algorithms"] == ["bc"] and index["spec"]["seeds"] == [0, 1]
    for seed in (0, 1):
        run = out / "trials" / trial_id / f"seed_{seed}"
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "finished" and summary["steps"] == 200
        config = json.loads((run / "config.json").read_text())
        from offrl.algos import bc
        from offrl.train.configs import config_to_json
        assert config["algorithm_config"] == config_to_json(bc.Config())  # default hyperparameters
    assert main(arguments) == 0  # the same command again: nothing left to train
    assert "1 already done, 0 to run" in capsys.readouterr().out
    assert [e["event"] for e in read_events(out)][-1] == "skipped"


def test_a_sweep_recorded_before_a_train_field_existed_still_matches_its_spec():
    """offrl added TrainConfig fields (reward_multiplier, reward_offset) after sweeps were written: a
    recorded spec without them matches today's spec that leaves them at their defaults, and not one
    that sets them (those trials would run differently)."""
    from offrl.sweep.index import _same_but_for_new_train_defaults
    from offrl.sweep.spec import parse_spec

    raw = {"algorithms": ["bc"], "datasets": ["pendulum-v0"], "train": {"steps": 100}}
    today = parse_spec(raw)
    recorded = {"name": "old", **json.loads(json.dumps(today.values))}
    for name in ("reward_multiplier", "reward_offset"):
        recorded["train"].pop(name)
    assert _same_but_for_new_train_defaults(recorded, today)
    shifted = parse_spec({**raw, "train": {"steps": 100, "reward_offset": -1.0}})
    assert not _same_but_for_new_train_defaults(recorded, shifted)
    other_budget = parse_spec({**raw, "train": {"steps": 200}})
    assert not _same_but_for_new_train_defaults(recorded, other_budget)


def test_a_sweep_recorded_before_a_config_field_existed_resumes_under_its_recorded_ids(tmp_path, capsys):
    """offrl adds algorithm Config fields (MOPO's `uncertainty`, CDT's offsets): a trial recorded
    without one, which today's default leaves unchanged, is the same trial under its recorded id
    (nothing reruns); a recorded trial whose shared fields differ is not, and the sweep refuses."""
    from offrl.cli import main

    data = pendulum_shaped_npz(tmp_path / "data.npz")
    out = tmp_path / "bench"
    arguments = ["bench", "--algos", "bc", "--datasets", str(data), "--seeds", "1", "--steps", "20",
                 "--eval-every", "20", "--eval-episodes", "1", "--log-every", "10", "--out", str(out)]
    assert main(arguments) == 0
    index = json.loads((out / "sweep.json").read_text())
    (trial_id,) = index["trials"]
    # As an older offrl wrote it: without the field `normalize_rewards`, under the id that config hashed to.
    old_id = trial_id[:-8] + "0ld1d000"
    entry = index["trials"].pop(trial_id)
    entry["definition"]["algorithm_config"].pop("normalize_rewards")
    entry["run_dir"] = f"trials/{old_id}"
    index["trials"][old_id] = entry
    (out / "sweep.json").write_text(json.dumps(index))
    (out / "trials" / trial_id).rename(out / "trials" / old_id)
    capsys.readouterr()
    assert main(arguments) == 0
    assert "1 already done, 0 to run" in capsys.readouterr().out
    assert not (out / "trials" / trial_id).exists()

    index = json.loads((out / "sweep.json").read_text())
    index["trials"][old_id]["definition"]["algorithm_config"]["learning_rate"] = 0.5
    (out / "sweep.json").write_text(json.dumps(index))
    assert main(arguments) == 2
    assert "lists other trials" in capsys.readouterr().err
