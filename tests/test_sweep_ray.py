"""The Ray executor on a local Ray instance (2 CPUs, started and shut down here): a failing
trial, a trial whose Ray worker is killed just after a checkpoint (the deterministic stall point
of offrl.sweep.trial), and a resumed sweep that completes the rest, with the same sweep directory
layout as the local executor and the killed trial equal to an uninterrupted one."""

from __future__ import annotations

import json

import pytest

from offrl.sweep.trial import STALL_AFTER_STEP_ENV
from sweep_helpers import (
    STALL_STEP,
    assert_equals_uninterrupted,
    assert_left_as_killed,
    pendulum_shaped_npz,
    read_events,
    tiny_spec_text,
    write_spec,
)

ray = pytest.importorskip("ray")


@pytest.fixture
def local_ray(monkeypatch):
    """A local Ray instance whose workers carry the stall point (they take the environment of the
    process that starts Ray, so it is set first): the one trial that trains dies just after its
    step-STALL_STEP checkpoint on its first attempt. Ray starts before JAX does anything here."""
    monkeypatch.setenv(STALL_AFTER_STEP_ENV, str(STALL_STEP))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def test_ray_sweep_kill_and_resume_same_layout(tmp_path, local_ray, monkeypatch):
    from offrl.sweep import run_sweep

    pendulum_shaped_npz(tmp_path / "data.npz")
    spec = write_spec(tmp_path / "tiny.yaml", tiny_spec_text("[0, 64]"))  # batch size 0 fails, 64 trains
    out = tmp_path / "sweep"
    # First run with the sweep directory used in place by the Ray tasks ("shared" storage); the
    # worker running the good trial kills itself just after its step-STALL_STEP checkpoint.
    first = run_sweep(spec, out=out, engine="ray", ray_storage="shared", echo=None)
    index = json.loads((out / "sweep.json").read_text())
    (killed,) = [i for i, trial in index["trials"].items() if trial["hyperparameters"]["batch_size"] == 64]
    (bad,) = [trial for trial in first.problems if trial != killed]
    assert_left_as_killed(out / "trials" / killed)
    assert first.counts == {"failed": 1, "interrupted": 1}
    assert "Ray task ended without a result" in first.problems[killed]
    assert "--batch-size is 0" in first.problems[bad]

    # Resume with the default "ship" storage: the interrupted trial's directory travels to the
    # worker, continues from its checkpoints there, and comes back.
    second = run_sweep(spec, out=out, engine="ray", echo=None)
    assert sorted(second.ran) == sorted([bad, killed]) and second.skipped == []
    assert second.counts == {"finished": 1, "failed": 1}
    for seed in (0, 1):
        run = out / "trials" / killed / f"seed_{seed}"
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "finished"
        assert [json.loads(line)["step"] for line in (run / "eval.jsonl").read_text().splitlines()] == [300, 600]
        assert {"config.json", "summary.json", "eval.jsonl", "metrics.jsonl", "checkpoints"} <= {p.name for p in run.iterdir()}
        assert (run / "checkpoints" / "step_000000600.msgpack").is_file()

    # The same layout as the local executor: index files, trials/<id>/trial.json + seed_<s>/.
    assert {"sweep.json", "trials.jsonl", "selection.json", "trials"} <= {p.name for p in out.iterdir()}
    assert {p.name for p in (out / "trials" / killed).iterdir()} == {"trial.json", "seed_0", "seed_1"}
    assert not [p for p in (out / "trials").iterdir() if p.name.startswith(".")]  # no half-unpacked copies
    record = json.loads((out / "trials" / killed / "trial.json").read_text())
    assert record["status"] == "finished" and record["resumed"] and sorted(record["validation"]["per_seed"]) == ["0", "1"]
    selection = json.loads((out / "selection.json").read_text())
    assert selection["groups"][0]["best"]["trial"] == killed

    # Once more: only the failed trial runs again.
    third = run_sweep(spec, out=out, engine="ray", echo=None)
    assert third.ran == [bad] and third.skipped == [killed]
    assert [e["trial"] for e in read_events(out) if e["event"] == "started"][-1:] == [bad]

    # Exact: killed in a Ray worker, resumed in another, equal to the trial run uninterrupted.
    monkeypatch.delenv(STALL_AFTER_STEP_ENV)
    assert_equals_uninterrupted(out, killed, tmp_path / "reference")
