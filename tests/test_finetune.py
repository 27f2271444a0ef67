"""The offline-to-online engine: batch composition, the offline data left alone, online terminals vs
timeouts, UTD, WSRL's warm-up, fine-tuning settings, resume (bit-identical at an episode boundary
with a real algorithm; a fresh episode mid-episode), and a real fine-tuning gain."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from offrl.algos import ALGORITHMS, get_algorithm, rebrac, spot
from offrl.data.collect import collect_episodes
from offrl.data.transforms import Normalizer, training_arrays
from offrl.errors import ConfigError
from offrl.train.checkpoint import checkpoint_files, read_payload
from offrl.train.finetune import (
    FinetuneConfig,
    decayed_config,
    finetune,
    online_algorithm_config,
    reset_optimizers,
    resolve_settings,
    resume_finetune,
    sample_mixed_batch,
    train_with_prior_data,
)
from offrl.train.offline import TrainConfig, train_offline
from probe_algorithm import MARKER, ProbeConfig, probe

from scripted import uniform_random

@pytest.fixture(scope="module")
def marked_pendulum():
    """1,000 random Pendulum transitions whose observations are marked as offline."""
    dataset = collect_episodes("Pendulum-v1", uniform_random, num_episodes=5, seed=1, name="marked")
    dataset.observations[:, -1] = MARKER
    dataset.next_observations[:, -1] = MARKER
    dataset.metadata.ref_min_score, dataset.metadata.ref_max_score = -1200.0, -150.0
    return dataset


@pytest.fixture
def registered_probe(monkeypatch):
    monkeypatch.setitem(ALGORITHMS, "probe", probe)
    return probe


def records(path, name):
    return [json.loads(line) for line in (path / name).read_text().splitlines()]


def short(**changes):
    values = dict(online_steps=300, eval_every=150, eval_episodes=2, log_every=50, checkpoint_every=150, seed=2)
    values.update(changes)
    return FinetuneConfig(**values)


# ----------------------------------------------------------------------------------- batches
def test_sampled_batch_holds_the_ratio_of_offline_rows_and_only_filled_online_rows():
    offline = {name: jnp.full((100, 3) if "observations" in name else (100, 1) if name == "actions" else (100,), -1.0)
               for name in ("observations", "actions", "rewards", "next_observations", "dones")}
    online = {name: jnp.full((50, *values.shape[1:]), 7.0) for name, values in offline.items()}
    online = {name: values.at[:10].set(1.0) for name, values in online.items()}  # 10 filled rows, 40 never written
    sample = jax.jit(sample_mixed_batch, static_argnums=(3, 4))
    for offline_rows in (0, 16, 64):
        batch = sample(offline, online, jax.random.PRNGKey(offline_rows), 64, offline_rows, jnp.int32(10))
        rewards = np.asarray(batch.rewards)
        assert rewards.shape == (64,)
        assert np.all(rewards[:offline_rows] == -1.0) and np.all(rewards[offline_rows:] == 1.0)
        assert batch.observations.shape == (64, 3)


def test_engine_batches_match_the_ratio_and_leave_the_offline_data_unchanged(marked_pendulum, tmp_path):
    result = train_with_prior_data(probe, ProbeConfig(), marked_pendulum, short(offline_ratio=0.25, utd=2),
                                   tmp_path / "run", progress=False)
    metrics = records(tmp_path / "run", "metrics.jsonl")
    assert [m["online_step"] for m in metrics] == [50, 100, 150, 200, 250, 300]
    assert all(m["offline_rows"] == 5 and m["online_rows"] == 15 and m["offline_first"] == 1 for m in metrics)
    assert int(result.state.updates) == 300 * 2  # UTD 2: two updates per transition, from the first one
    # The offline arrays the batches came from are exactly the transformed dataset: nothing was written.
    expected = training_arrays(marked_pendulum, Normalizer.from_json(json.loads((tmp_path / "run/config.json").read_text())["normalizer"]))
    for name, values in expected.items():
        np.testing.assert_array_equal(np.asarray(result.offline_data[name]), values)
    # Online rows never carry the offline marker: no offline row was copied into the buffer.
    assert result.buffer_rows == 300 and not np.any(result.buffer["observations"][:, -1] > MARKER / 2)


def test_online_terminals_and_timeouts_are_stored_apart(tmp_path):
    """Pendulum only truncates (200 steps); InvertedPendulum terminates when the pole falls."""
    for env_id, steps in (("Pendulum-v1", 450), ("InvertedPendulum-v5", 200)):
        dataset = collect_episodes(env_id, uniform_random, num_episodes=2, seed=0, name=env_id)
        result = train_with_prior_data(probe, ProbeConfig(), dataset, short(online_steps=steps, warmup_steps=steps),
                                       tmp_path / env_id, progress=False)
        buffer = result.buffer
        dones, timeouts = buffer["dones"].astype(bool), buffer["timeouts"].astype(bool)
        ends = dones | timeouts
        inside = ~ends[:-1]
        # Within an episode the next observation is the following row's observation ...
        np.testing.assert_array_equal(buffer["next_observations"][:-1][inside], buffer["observations"][1:][inside])
        # ... and at an end it is the episode's true final observation, not the reset one.
        assert not np.any(np.all(buffer["next_observations"][:-1][~inside] == buffer["observations"][1:][~inside], axis=1))
        if env_id == "Pendulum-v1":
            assert not dones.any() and np.flatnonzero(timeouts).tolist() == [199, 399]
        else:
            assert dones.sum() >= 5 and not timeouts.any()
            # InvertedPendulum-v5 terminates once |angle| > 0.2: the stored final observation shows it.
            assert np.all(np.abs(buffer["next_observations"][dones, 1]) > 0.2)
            assert np.all(np.abs(buffer["next_observations"][~dones, 1]) <= 0.2)


def test_online_transitions_go_through_the_runs_normaliser(tmp_path):
    dataset = collect_episodes("Pendulum-v1", uniform_random, num_episodes=2, seed=0, name="pendulum")
    config = ProbeConfig(normalize_observations=True, normalize_rewards=True)
    result = train_with_prior_data(probe, config, dataset, short(online_steps=200, warmup_steps=200, log_every=200),
                                   tmp_path / "run", progress=False)
    normalizer = Normalizer.from_json(json.loads((tmp_path / "run/config.json").read_text())["normalizer"])
    assert normalizer.reward_scale != 1.0 and np.all(normalizer.observation_std != 1.0)
    raw = result.buffer["observations"] * normalizer.observation_std + normalizer.observation_mean
    np.testing.assert_allclose(raw[:, 0] ** 2 + raw[:, 1] ** 2, 1.0, atol=1e-4)  # Pendulum: (cos, sin, velocity)
    assert not np.allclose(result.buffer["observations"][:, 0] ** 2 + result.buffer["observations"][:, 1] ** 2, 1.0, atol=1e-2)
    episode_return = records(tmp_path / "run", "metrics.jsonl")[-1]["train_return"]  # raw, from the env
    assert result.buffer["rewards"].sum() / normalizer.reward_scale == pytest.approx(episode_return, rel=1e-4)


def test_wsrl_collects_a_warmup_then_trains_on_online_rows_only(marked_pendulum, tmp_path):
    result = train_with_prior_data(probe, ProbeConfig(), marked_pendulum,
                                   short(mode="wsrl", warmup_steps=100, utd=3), tmp_path / "run", progress=False)
    assert result.offline_data is None and result.settings.offline_ratio == 0.0
    assert int(result.state.updates) == (300 - 100) * 3
    metrics = [m for m in records(tmp_path / "run", "metrics.jsonl") if "offline_rows" in m]
    assert [m["online_step"] for m in metrics] == [150, 200, 250, 300]  # nothing before the warm-up ends
    assert all(m["offline_rows"] == 0 and m["online_rows"] == 20 for m in metrics)
    assert result.summary["updates"] == 600


# ---------------------------------------------------------------------------------- settings
def test_algorithm_settings_flags_and_decay():
    settings = resolve_settings(rebrac, FinetuneConfig())
    config = online_algorithm_config(rebrac, rebrac.Config(), settings)
    assert config.critic_bc_coef == 0.0 and settings.exploration_noise == 0.03 and settings.offline_ratio == 0.5
    for progress, factor in ((0.0, 1.0), (0.25, 0.75), (1.0, 0.0)):
        assert float(decayed_config(config, settings.decay, jnp.float32(progress)).actor_bc_coef) == pytest.approx(
            rebrac.Config().actor_bc_coef * factor)
    spot_settings = resolve_settings(spot, FinetuneConfig())
    floor = decayed_config(spot.Config(), spot_settings.decay, jnp.float32(1.0)).support_weight
    assert float(floor) == pytest.approx(0.2 * spot.Config().support_weight) and spot_settings.reset_optimizers
    flags = resolve_settings(rebrac, FinetuneConfig(offline_ratio=0.1, exploration_noise=0.0, utd=4))
    assert (flags.offline_ratio, flags.exploration_noise, flags.utd) == (0.1, 0.0, 4)
    assert resolve_settings(rebrac, FinetuneConfig(mode="wsrl")).warmup_steps == 5_000


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="--offline-ratio"):
        FinetuneConfig(offline_ratio=1.5).validate()
    with pytest.raises(ConfigError, match="--mode"):
        FinetuneConfig(mode="both").validate()

    class typo:  # noqa: N801
        __name__ = "typo"
        NAME = "typo"
        FINETUNE = {"ofline_ratio": 0.5}

    with pytest.raises(ConfigError, match="ofline_ratio"):
        resolve_settings(typo, FinetuneConfig())


def test_reset_optimizers_clears_adam_moments():
    import optax
    from flax.training.train_state import TrainState

    @struct.dataclass
    class TwoParts:
        actor: TrainState
        other: jax.Array

    actor = TrainState.create(apply_fn=None, params={"w": jnp.ones(3)}, tx=optax.adam(1e-3))
    state = TwoParts(actor=actor.apply_gradients(grads={"w": jnp.arange(3.0)}), other=jnp.ones(2))
    moments = lambda s: sum(float(jnp.abs(leaf).sum()) for leaf in jax.tree.leaves(s.actor.opt_state))  # noqa: E731
    assert moments(state) > 0
    fresh = reset_optimizers(state)
    assert moments(fresh) == 0
    np.testing.assert_array_equal(fresh.actor.params["w"], state.actor.params["w"])
    np.testing.assert_array_equal(fresh.other, state.other)


# ------------------------------------------------------------------------------------ resume
def test_resume_after_interruption_continues_from_the_checkpoint(marked_pendulum, registered_probe, tmp_path):
    run = tmp_path / "run"

    def interrupt(log):
        if log["online_step"] == 250:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_with_prior_data(probe, ProbeConfig(), marked_pendulum, short(), run, progress=False, on_log=interrupt)
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"
    assert [path.name for path in checkpoint_files(run / "checkpoints")] == ["step_000000150.msgpack"]
    saved = read_payload(run / "checkpoints/step_000000150.msgpack")["engine"]["buffer"]

    result = resume_finetune(run, dataset=marked_pendulum, progress=False)
    assert result.summary["status"] == "finished" and result.summary["resumed_from_steps"] == [150]
    assert int(result.state.updates) == 300  # 150 restored + 150 after the resume, none repeated
    for name, values in saved.items():
        np.testing.assert_array_equal(result.buffer[name][:150], values)
    assert result.buffer_rows == 300
    # Step 150 is mid-episode (Pendulum: 200 steps): the simulator's state was not saved, so the
    # resume starts a fresh episode; the interrupted one stays a cut episode (no terminal, no timeout).
    buffer = result.buffer
    assert buffer["dones"][149] == 0 and buffer["timeouts"][149] == 0
    assert not np.array_equal(buffer["next_observations"][149], buffer["observations"][150])
    assert not buffer["timeouts"].any()  # uninterrupted: a timeout at row 199; the fresh episode ends at row 349
    assert [e["online_step"] for e in records(run, "eval.jsonl")] == [0, 150, 300]
    assert [m["online_step"] for m in records(run, "metrics.jsonl")] == [50, 100, 150, 200, 250, 300]
    again = resume_finetune(run, dataset=marked_pendulum, progress=False)  # finished: nothing to do
    assert again.summary == result.summary


def state_bytes(state) -> bytes:
    """An agent state (or a checkpoint's state dict) as msgpack bytes: equal bytes = same leaves,
    values and dtypes."""
    from flax import serialization

    tree = state if isinstance(state, dict) else serialization.to_state_dict(jax.device_get(state))
    return serialization.msgpack_serialize(tree)


def without_wall_clock(rows):
    return [{k: v for k, v in row.items() if k != "env_steps_per_second"} for row in rows]


def test_resume_at_an_episode_boundary_restores_exactly_and_ends_bit_identical(tmp_path, monkeypatch):
    """TD3+BC (32x32) fine-tuned on Pendulum-v1 for 400 online steps, checkpoints every 200 (one env:
    Pendulum's 200-step episodes end exactly there). Run B is stopped at a deterministic point
    (Ctrl-C from on_log at step 300, after the step-200 checkpoint) and resumed. B's checkpoint
    equals the uninterrupted run A's at step 200 (parameters, optimiser states, key, buffer,
    episode position, next actions, metric sums); the resume restores exactly that; and, as every
    episode starts from a seeded reset, the whole of B equals A bit for bit on CPU. Logs every 150
    steps, so the checkpoint falls inside a log line whose sums it must carry."""
    from offrl.algos import td3_bc
    from offrl.train.finetune import records as finetune_records

    dataset = collect_episodes("Pendulum-v1", uniform_random, num_episodes=3, seed=0, name="pendulum-random")
    dataset.metadata.ref_min_score, dataset.metadata.ref_max_score = -1200.0, -150.0
    config = td3_bc.Config(hidden_dims=(32, 32), batch_size=64)
    train_offline(td3_bc, config, dataset, TrainConfig(steps=50, log_every=50, eval_every=0, eval_episodes=1),
                  tmp_path / "offline", progress=False)
    online = FinetuneConfig(online_steps=400, eval_every=150, eval_episodes=1, log_every=150, checkpoint_every=200,
                            exploration_noise=0.1, seed=3)
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    finetune(tmp_path / "offline", online, whole, dataset=dataset, progress=False)

    def stop_at_300(log):
        if log["online_step"] == 300:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(tmp_path / "offline", online, stopped, dataset=dataset, progress=False, on_log=stop_at_300)
    assert [path.name for path in checkpoint_files(stopped / "checkpoints")] == ["step_000000200.msgpack"]
    at_200 = [read_payload(run / "checkpoints/step_000000200.msgpack") for run in (stopped, whole)]
    assert state_bytes(at_200[0]["state"]) == state_bytes(at_200[1]["state"])
    np.testing.assert_array_equal(at_200[0]["key"], at_200[1]["key"])
    engines = [payload["engine"] for payload in at_200]
    assert sorted(engines[0]) == sorted(engines[1])
    for name in engines[0]:
        if name == "buffer":
            for field_name, values in engines[0]["buffer"].items():
                np.testing.assert_array_equal(values, engines[1]["buffer"][field_name])
        elif name not in ("train_seconds", "wall_seconds"):
            np.testing.assert_array_equal(engines[0][name], engines[1][name])
    assert json.loads(engines[0]["episode_steps"]) == [0] and json.loads(engines[0]["env_episodes"]) == [1]
    assert json.loads(engines[0]["metrics_sum"]) and engines[0]["metrics_count"] == 50  # steps 151-200

    restored = {}
    real_restore = finetune_records.restore

    def spy(run, template, buffer, capacity):
        point, buffer = real_restore(run, template, buffer, capacity)
        restored.update(point=point, buffer=jax.device_get(buffer))  # host copies: the buffer is donated later
        return point, buffer

    monkeypatch.setattr(finetune_records, "restore", spy)
    result = resume_finetune(stopped, dataset=dataset, progress=False)
    point, expected = restored["point"], at_200[1]
    assert point.step == 200 and state_bytes(point.state) == state_bytes(expected["state"])
    np.testing.assert_array_equal(np.asarray(point.key), expected["key"])
    np.testing.assert_array_equal(point.next_actions, expected["engine"]["next_actions"])
    for name, values in restored["buffer"].items():
        np.testing.assert_array_equal(values[:200], expected["engine"]["buffer"][name])
        assert not np.any(values[200:])

    assert result.summary["resumed_from_steps"] == [200]
    finals = [read_payload(run / "checkpoints/step_000000400.msgpack") for run in (stopped, whole)]
    assert state_bytes(finals[0]["state"]) == state_bytes(finals[1]["state"])
    np.testing.assert_array_equal(finals[0]["key"], finals[1]["key"])
    for name, values in finals[0]["engine"]["buffer"].items():
        np.testing.assert_array_equal(values, finals[1]["engine"]["buffer"][name])
    assert without_wall_clock(records(stopped, "metrics.jsonl")) == without_wall_clock(records(whole, "metrics.jsonl"))
    assert (stopped / "eval.jsonl").read_text() == (whole / "eval.jsonl").read_text()
    summaries = [json.loads((run / "summary.json").read_text()) for run in (stopped, whole)]
    for key in ("status", "online_steps", "return_before", "return_after", "best_return", "best_step", "score_before",
                "score_after", "best_score", "regret", "train_regret", "training_episodes", "updates"):
        assert summaries[0][key] == summaries[1][key], key
    assert summaries[0]["training_episodes"] == 2


KILLED_CHILD = """
import sys, time
sys.path.insert(0, {tests!r})
from probe_algorithm import ProbeConfig, probe
from offrl.data.load import load_dataset
from offrl.train.finetune import FinetuneConfig, train_with_prior_data

def stall(log):
    if log["online_step"] == 600:  # after the checkpoint at 500: wait here to be killed
        print("ready", flush=True)
        time.sleep(600)

train_with_prior_data(probe, ProbeConfig(), load_dataset({data!r}), FinetuneConfig(online_steps=1_000, eval_every=500,
                      eval_episodes=1, log_every=100, checkpoint_every=500, seed=4), {run!r}, progress=False, on_log=stall)
"""


def test_resume_after_sigkill(marked_pendulum, registered_probe, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from offrl.data.d4rl_io import write_npz
    from offrl.data.load import load_dataset

    data, run = str(write_npz(marked_pendulum, tmp_path / "prior.npz")), str(tmp_path / "run")
    script = KILLED_CHILD.format(tests=os.path.dirname(__file__), data=data, run=run)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    assert json.loads((tmp_path / "run/summary.json").read_text())["status"] == "running"  # killed: no chance to say more
    result = resume_finetune(run, dataset=load_dataset(data), progress=False)
    assert result.summary["status"] == "finished" and result.summary["resumed_from_steps"] == [500]
    assert int(result.state.updates) == 1_000 and result.buffer_rows == 1_000
    assert [e["online_step"] for e in records(tmp_path / "run", "eval.jsonl")] == [0, 500, 1_000]
    assert [m["online_step"] for m in records(tmp_path / "run", "metrics.jsonl")] == list(range(100, 1_001, 100))


# ---------------------------------------------------------------------------------- learning
# Measured here (seed 0): ReBRAC pre-trained for 1,000 updates on uniformly random Pendulum data
# returns about -1,100 to -1,300; after 3,000 fine-tuning steps about -150 to -400. Without updates
# (or with the critic loss broken) the policy stays where it started.
FINETUNE_STEPS = 3_000
REQUIRED_GAIN = 400.0


@pytest.mark.slow
def test_finetuning_improves_a_weak_offline_policy(tmp_path):
    dataset = collect_episodes("Pendulum-v1", uniform_random, num_episodes=20, seed=0, name="pendulum-random")
    algo = get_algorithm("rebrac")
    config = algo.Config(hidden_dims=(64, 64), batch_size=256)
    offline = train_offline(algo, config, dataset, TrainConfig(steps=1_000, eval_every=1_000, log_every=500, eval_episodes=5),
                            tmp_path / "offline", progress=False)
    result = finetune(tmp_path / "offline", FinetuneConfig(online_steps=FINETUNE_STEPS, eval_every=1_500, eval_episodes=5),
                      tmp_path / "online", dataset=dataset, progress=False)
    summary = result.summary
    saved = json.loads((tmp_path / "online/config.json").read_text())
    assert saved["offline_run"]["step"] == 1_000 and len(saved["offline_run"]["sha256"]) == 64
    assert summary["return_before"] == pytest.approx(
        records(tmp_path / "online", "eval.jsonl")[0]["return_mean"]) and offline.summary["final_return"] < -700
    assert summary["return_after"] > summary["return_before"] + REQUIRED_GAIN, summary
    assert summary["online_steps"] == FINETUNE_STEPS and summary["wall_seconds"] > 0


# --------------------------------------------------------------------------------------- CLI
def test_cli_finetune_resume_and_rlpd(marked_pendulum, registered_probe, tmp_path, capsys):
    from offrl.cli import main
    from offrl.data.d4rl_io import write_npz

    data = str(write_npz(marked_pendulum, tmp_path / "prior.npz"))
    train_offline(probe, ProbeConfig(), marked_pendulum, TrainConfig(steps=20, log_every=10, eval_episodes=1),
                  tmp_path / "offline", progress=False)
    online = ["--online-steps", "60", "--eval-every", "30", "--eval-episodes", "1", "--log-every", "30", "--no-progress"]
    assert main(["finetune", str(tmp_path / "offline"), "--dataset", data, "--run-dir", str(tmp_path / "ft"),
                 "--offline-ratio", "0.25", "--utd", "3", *online]) == 0
    out = capsys.readouterr().out
    assert "before ->" in out and "60 online steps" in out and "regret" in out
    saved = json.loads((tmp_path / "ft/config.json").read_text())
    assert saved["settings"]["offline_ratio"] == 0.25 and saved["offline_run"]["step"] == 20
    assert [m["offline_rows"] for m in records(tmp_path / "ft", "metrics.jsonl")] == [5, 5]
    assert main(["finetune", str(tmp_path / "offline"), "--dataset", data, "--run-dir", str(tmp_path / "ft"), "--resume",
                 "--no-progress"]) == 0
    assert "run directory" in capsys.readouterr().out

    assert main(["finetune", str(tmp_path / "offline"), "--offline-ratio", "1.5", *online]) == 2
    assert "--offline-ratio is 1.5" in capsys.readouterr().err
    # `offrl train rlpd` goes to the fine-tuning engine from an untrained agent (here only its warm-up).
    assert main(["train", "rlpd", "--dataset", data, "--run-dir", str(tmp_path / "rlpd"), "--warmup-steps", "60",
                 "--hidden-dims", "8", "--num-critics", "2", *online]) == 0
    summary = json.loads((tmp_path / "rlpd/summary.json").read_text())
    assert summary["status"] == "finished" and summary["online_steps"] == 60 and summary["updates"] == 0
    saved = json.loads((tmp_path / "rlpd/config.json").read_text())
    assert saved["offline_run"] is None and saved["settings"]["utd"] == 20 and saved["algorithm"] == "rlpd"
