"""`offrl datasets make ENV --safe`: a DSRL-style dataset through the CLI end to end (a tiny budget:
the agents barely train, the test checks the recipe, not learning), and the bad inputs it refuses."""

from __future__ import annotations

import minari
import numpy as np
import pytest

from offrl.algos.online import sac_lag
from offrl.cli import EXIT_BAD_INPUT, main
from offrl.data.collect import dataset_name
from offrl.data.registry import resolve_dataset
from offrl.envs.torque_cost import PENDULUM_TORQUE_COST_ID, TORQUE_LIMIT
from offrl.evaluate.safe_scores import safe_record

ENV = PENDULUM_TORQUE_COST_ID
BUDGET = 100  # per agent: 10 random steps, 90 updates; snapshots every 25 steps, 75 and 100 recorded
SIZE = 1_200  # 3 agents x 2 snapshots x 200 transitions: one Pendulum episode per snapshot
NAME = dataset_name(ENV, "safe")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("offrl_data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OFFRL_DATA_DIR", str(data_dir))
        patch.setenv("MINARI_DATASETS_PATH", str(data_dir / "datasets"))
        code = main(["datasets", "make", ENV, "--safe", "--budget", str(BUDGET), "--size", str(SIZE),
                     "--cost-limits", "10,2", "--seed", "3", "--no-progress"])
        yield {"code": code, "dataset": resolve_dataset(NAME), "minari_steps": minari.load_dataset(NAME).total_steps,
               "path": data_dir / "datasets" / NAME}


def test_dataset_is_written_and_opens_in_minari(made):
    assert made["code"] == 0 and (made["path"] / "data" / "metadata.json").exists()
    dataset = made["dataset"]
    assert dataset.num_transitions == SIZE == made["minari_steps"]
    assert dataset.metadata.env_id == ENV


def test_costs_are_aligned_with_rewards(made):
    """One cost per transition, the env's own: 1 exactly where |torque| > 1 on that row."""
    dataset = made["dataset"]
    assert dataset.costs is not None and dataset.costs.shape == dataset.rewards.shape
    np.testing.assert_array_equal(dataset.costs, (np.abs(dataset.actions[:, 0]) > TORQUE_LIMIT).astype(np.float32))
    assert dataset.episode_costs().shape == dataset.episode_returns().shape


def test_every_agent_and_cost_limit_contributes_episodes(made):
    dataset, provenance = made["dataset"], made["dataset"].metadata.provenance
    agents = provenance["agents"]
    assert [agent["cost_limit"] for agent in agents] == [None, 2.0, 10.0]
    assert [agent["algorithm"] for agent in agents] == ["sac", "sac_lag", "sac_lag"]
    assert [agent["seed"] for agent in agents] == [3, 4, 5]
    lengths = dataset.episode_lengths
    previous_end = 0
    for agent in agents:
        start, end = agent["episode_range"]
        assert start == previous_end and end > start
        previous_end = end
        recorded = agent["recorded_snapshots"]
        assert [snapshot["step"] for snapshot in recorded] == [75, 100]
        assert sum(snapshot["transitions"] for snapshot in recorded) == lengths[start:end].sum() == SIZE // 3
        costs = dataset.episode_costs()[start:end]
        assert sum(s["mean_cost"] * s["episodes"] for s in recorded) == pytest.approx(costs.sum())
        assert np.isfinite(agent["eval_return"]) and np.isfinite(agent["eval_cost"]) and agent["budget"] == BUDGET
    assert previous_end == dataset.num_episodes
    for agent in agents[1:]:
        config = sac_lag.Config(cost_limit=agent["cost_limit"], max_episode_steps=200)
        assert agent["cost_q_limit"] == pytest.approx(sac_lag.cost_q_limit(config))
        assert agent["final_multiplier"] > 0


def test_provenance_and_reference_scores(made):
    dataset = made["dataset"]
    meta, provenance = dataset.metadata, dataset.metadata.provenance
    assert provenance["cost_limits"] == provenance["target_costs"] == [2.0, 10.0]
    assert provenance["budget"] == BUDGET and provenance["seed"] == 3 and provenance["size"] == SIZE
    assert provenance["episode_length"] == 200 and provenance["env_id"] == ENV and "offrl_version" in provenance
    assert meta.ref_min_score == pytest.approx(provenance["random_return"])
    assert meta.ref_max_score == pytest.approx(max(agent["eval_return"] for agent in provenance["agents"]))
    # A 100-step agent may not beat the random policy; the recipe then says so instead of pretending.
    assert bool(provenance["warnings"]) == (meta.ref_max_score <= meta.ref_min_score)
    reference = provenance["dsrl_reference"]
    episode_costs = dataset.episode_costs()
    complete = episode_costs[dataset.episode_lengths == 200]  # none is cut here: 200 transitions per snapshot
    assert (reference["min_episode_cost"], reference["max_episode_cost"]) == (complete.min(), complete.max())
    assert (reference["min_episode_reward"], reference["max_episode_reward"]) == (meta.ref_min_score, meta.ref_max_score)
    record = safe_record(dataset.episode_returns(), episode_costs, provenance["target_costs"][0],
                         meta.ref_min_score, meta.ref_max_score)
    assert np.isfinite(record["normalized_reward"]) and record["normalized_cost"] > 0


@pytest.mark.parametrize("env_id, flags, named", [
    ("Pendulum-v1", ["--safe"], "--safe"),  # no info["cost"]
    (ENV, ["--safe", "--cost-limits", "5,-1"], "--cost-limits"),
    (ENV, ["--safe", "--cost-limits", "5,x"], "--cost-limits"),
    (ENV, ["--safe", "--cost-limits", "nan"], "--cost-limits"),
    (ENV, ["--cost-limits", "5"], "--cost-limits"),  # without --safe
    (ENV, ["--safe", "--levels", "random"], "--levels"),
    (ENV, ["--safe", "--budget", "0"], "--budget"),
    (ENV, ["--safe", "--size", "3"], "--size"),  # fewer transitions than recorded snapshots
    (ENV, ["--safe", "--snapshots-per-agent", "0"], "--snapshots-per-agent"),
    (ENV, ["--safe", "--snapshot-span", "early"], "--snapshot-span"),
    (ENV, ["--snapshot-span", "whole"], "--snapshot-span"),  # without --safe
])
def test_bad_input_is_refused_in_one_sentence_and_writes_nothing(env_id, flags, named, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("OFFRL_DATA_DIR", str(tmp_path / "offrl_data"))  # not the module fixture's
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "offrl_data" / "datasets"))
    code = main(["datasets", "make", env_id, *flags, "--no-progress"])
    error = capsys.readouterr().err.strip()
    assert code == EXIT_BAD_INPUT
    assert error.startswith("offrl: error:") and named in error and error.count("\n") == 0
    assert not (tmp_path / "offrl_data").exists()


def test_an_interrupted_make_resumes_at_the_next_agent(made, tmp_path, monkeypatch):
    """Agents finished before an interruption are staged and reused: the resumed run trains only the
    rest, writes the same dataset as an uninterrupted one, and clears its staging."""
    from offrl.suites import safe_recipe

    monkeypatch.setenv("OFFRL_DATA_DIR", str(tmp_path / "offrl_data"))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "offrl_data" / "datasets"))
    real_train, trained = safe_recipe._train_agent, []

    def train_then_stop(env_id, index, *args):
        if index == 2:
            raise KeyboardInterrupt
        trained.append(index)
        return real_train(env_id, index, *args)

    monkeypatch.setattr(safe_recipe, "_train_agent", train_then_stop)
    request = dict(budget=BUDGET, size=SIZE, cost_limits=[10, 2], seed=3, progress=False, log=lambda message: None)
    with pytest.raises(KeyboardInterrupt):
        safe_recipe.make_safe_dataset(ENV, **request)
    staging = tmp_path / "offrl_data" / "datasets" / ".staging" / NAME
    assert sorted(p.name for p in staging.glob("agent-*.json")) == ["agent-0.json", "agent-1.json"]
    assert not (tmp_path / "offrl_data" / "datasets" / NAME).exists()

    trained.clear()
    monkeypatch.setattr(safe_recipe, "_train_agent", lambda env_id, index, *args: trained.append(index) or real_train(env_id, index, *args))
    path = safe_recipe.make_safe_dataset(ENV, **request)
    assert trained == [2] and not staging.exists()
    resumed, uninterrupted = resolve_dataset(NAME), made["dataset"]
    assert path == tmp_path / "offrl_data" / "datasets" / NAME
    for field in ("observations", "actions", "rewards", "costs", "terminals", "timeouts", "episode_starts"):
        np.testing.assert_array_equal(getattr(resumed, field), getattr(uninterrupted, field))
    agents = resumed.metadata.provenance["agents"]
    assert [agent["episode_range"] for agent in agents] == [a["episode_range"] for a in uninterrupted.metadata.provenance["agents"]]


def test_whole_span_records_snapshots_over_all_of_training(tmp_path, monkeypatch):
    """`--snapshot-span whole --snapshots-per-agent 4`: each agent's snapshots at 1/4, 2/4, 3/4 of its
    budget and its end (the second-half default: 5/8, 6/8, 7/8 and the end), each a quarter of its share."""
    monkeypatch.setenv("OFFRL_DATA_DIR", str(tmp_path / "offrl_data"))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "offrl_data" / "datasets"))
    size = 2 * 4 * 200  # two agents x four snapshots x one 200-step episode
    code = main(["datasets", "make", ENV, "--safe", "--budget", str(BUDGET), "--size", str(size), "--cost-limits", "5",
                 "--snapshot-span", "whole", "--snapshots-per-agent", "4", "--seed", "3", "--no-progress"])
    assert code == 0
    provenance = resolve_dataset(NAME).metadata.provenance
    assert provenance["snapshot_span"] == "whole" and provenance["snapshots_per_agent"] == 4
    for agent in provenance["agents"]:
        assert [snapshot["step"] for snapshot in agent["recorded_snapshots"]] == [25, 50, 75, 100]
        assert [snapshot["transitions"] for snapshot in agent["recorded_snapshots"]] == [200] * 4
