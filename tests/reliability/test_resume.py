"""Resume and determinism: same seed and config give bit-identical runs (CPU), and a run killed
at any moment continues from its latest valid checkpoint to the same end as an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import jax
import pytest

from offrl.algos import get_algorithm
from offrl.cli import main
from offrl.data.d4rl_io import write_npz
from offrl.train.checkpoint import load_checkpoint_full, read_payload, save_checkpoint
from offrl.train.offline import resume_offline, train_offline

from reliability_helpers import CHUNK, SHORT, assert_same_run, assert_same_state, pendulum_shaped_dataset, records
from small_configs import small_config


@pytest.fixture(scope="module")
def dataset():
    return pendulum_shaped_dataset(seed=0)


class Interrupt(BaseException):
    """Stands for a kill: raised from the logging callback, mid-run."""


def test_every_algorithm_is_deterministic_and_continues_identically_from_a_checkpoint(small_algorithm, tmp_path):
    """Same seed -> bit-identical state and metrics; and a checkpoint (saved to disk, loaded
    into a differently initialised template) continues exactly as the uninterrupted updates.
    One compiled program per algorithm (shared with test_algos' contract) keeps this cheap as
    algorithms are added; the engine's own resume path is tested end to end below."""
    setup = small_algorithm

    def run_chunks(state, key, chunks):
        history = []
        for _ in range(chunks):
            key, chunk_key = jax.random.split(key)
            state, metrics = setup.fused(state, setup.data, chunk_key)
            history.append({k: float(v) for k, v in metrics.items()})
        return state, key, history

    first, second = setup.init(), setup.init()
    assert_same_state(first, second)
    straight, _, straight_metrics = run_chunks(first, setup.train_key, 2)
    again, _, again_metrics = run_chunks(second, setup.train_key, 2)
    assert json.dumps(again_metrics) == json.dumps(straight_metrics)  # exact, NaN (a skipped quantity) included
    assert_same_state(again, straight)

    half, key, half_metrics = run_chunks(first, setup.train_key, 1)
    path = save_checkpoint(tmp_path, CHUNK, half, key)
    template = jax.tree.map(jax.numpy.zeros_like, first)  # nothing of the original can leak through
    restored = load_checkpoint_full(path, template)
    assert restored.step == CHUNK
    resumed, _, resumed_metrics = run_chunks(restored.state, restored.key, 1)
    assert json.dumps(half_metrics + resumed_metrics) == json.dumps(straight_metrics)
    assert_same_state(resumed, straight)


def test_an_interrupted_run_resumes_identically_past_a_half_written_checkpoint(dataset, tmp_path):
    """The engine end to end: run A uninterrupted; run B (same seed) stopped at step 150, after its
    step-100 checkpoint, then resumed past a half-written step-200 checkpoint, its config.json lacking
    fields offrl added later. B's first part equals A's bit for bit (determinism), and so does the
    whole resumed run (resume)."""
    algo = get_algorithm("iql")  # IQL: a learning-rate schedule that depends on the restored step
    reference, run = tmp_path / "reference", tmp_path / "run"
    train_offline(algo, small_config(algo), dataset, SHORT, reference, progress=False)

    def stop_at_150(record):
        if record["step"] == 150:  # metrics for 150 written; checkpoint 100 is the latest
            raise Interrupt

    with pytest.raises(Interrupt):
        train_offline(algo, small_config(algo), dataset, SHORT, run, progress=False, on_log=stop_at_150)
    assert json.loads((run / "summary.json").read_text())["status"] == "failed"
    # Determinism: the same seed gives the same metrics, evaluation and checkpoint.
    assert records(run / "metrics.jsonl") == records(reference / "metrics.jsonl")[:150 // SHORT.log_every]
    assert (run / "eval.jsonl").read_text() == (reference / "eval.jsonl").read_text().splitlines(keepends=True)[0]
    first = [read_payload(r / "checkpoints" / "step_000000100.msgpack") for r in (run, reference)]
    assert_same_state(first[0]["state"], first[1]["state"])

    # A kill during the next checkpoint's write: a truncated file under the final name (what a
    # non-atomic copy or a failing disk leaves), a stray temporary file, a half-written line.
    good = (run / "checkpoints" / "step_000000100.msgpack").read_bytes()
    (run / "checkpoints" / "step_000000200.msgpack").write_bytes(good[: len(good) // 3])
    (run / "checkpoints" / ".step_000000200.msgpack.k1ll.tmp").write_bytes(good[:100])
    with open(run / "metrics.jsonl", "a") as file:
        file.write('{"step": 200, "actor_lo')

    # A run written before offrl added fields resumes with their defaults (the behaviour it ran with):
    # drop fields added since, from config.json's train, normaliser and algorithm config.
    config = json.loads((run / "config.json").read_text())
    for section, name in (("train", "reward_offset"), ("train", "reward_multiplier"), ("normalizer", "reward_bias"),
                          ("algorithm_config", "max_advantage_weight")):
        config[section].pop(name)
    (run / "config.json").write_text(json.dumps(config))

    with pytest.warns(UserWarning, match="step_000000200.msgpack"):
        result = resume_offline(run, dataset=dataset, progress=False)
    assert result.summary["resumed_from_steps"] == [100]
    assert_same_run(run, reference)


FLAGS = ["--steps", "400", "--log-every", "50", "--checkpoint-every", "100", "--eval-every", "1000",
         "--eval-episodes", "1", "--hidden-dims", "32", "32", "--batch-size", "64", "--seed", "5", "--no-progress"]

# `offrl train` in a child process that stops, at a point that does not depend on timing, just after
# its step-250 metrics line (checkpoint 200 is the latest) and waits there to be SIGKILLed.
KILLED_CLI = """
import functools, sys, time
import offrl.train.offline as offline
from offrl.cli import main

def stall(record):
    if record["step"] == 250:
        print("ready", flush=True)
        time.sleep(600)

offline.train_offline = functools.partial(offline.train_offline, on_log=stall)
sys.exit(main(sys.argv[1:]))
"""


def test_sigkilled_cli_run_resumes_identically(dataset, tmp_path, capsys):
    data = str(write_npz(dataset, tmp_path / "data.npz"))
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    process = subprocess.Popen([sys.executable, "-c", KILLED_CLI, "train", "td3bc", "--dataset", data,
                                "--run-dir", str(killed), *FLAGS], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = process.stdout.readline().strip()
        if first.startswith("preset:"):  # the CLI names the preset it applied before training starts
            first = process.stdout.readline().strip()
        assert first == "ready", process.stderr.read()
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert json.loads((killed / "summary.json").read_text())["status"] == "running"
    assert sorted(p.name for p in (killed / "checkpoints").glob("step_*")) == ["step_000000100.msgpack", "step_000000200.msgpack"]
    assert [r["step"] for r in records(killed / "metrics.jsonl")] == [50, 100, 150, 200, 250]

    assert main(["train", "td3bc", "--resume", str(killed), "--no-progress"]) == 0
    assert "resumed from step 200" in capsys.readouterr().out
    assert main(["train", "td3bc", "--dataset", data, "--run-dir", str(reference), *FLAGS]) == 0
    assert_same_run(killed, reference)
    assert [r["step"] for r in records(killed / "metrics.jsonl")] == list(range(50, 401, 50))
