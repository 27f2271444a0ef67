"""D4RL-style generation: a tiny Pendulum suite end to end, and the pieces it is made of."""

from __future__ import annotations


import minari
import numpy as np
import pytest

from offrl.algos import sac
from offrl.data.dataset import DatasetMetadata
from offrl.data.collect import collect_transitions, complete_episode_returns, dataset_name, replay_dataset
from offrl.data.registry import resolve_dataset
from offrl.evaluate.scores import normalized_score
from offrl.suites import LEVELS, make_suite

ENV = "Pendulum-v1"
SIZE = 4_000  # 20 Pendulum episodes per level; = BUDGET, so medium-replay is never capped
BUDGET = 4_000


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """One suite for the module: SAC trains for 4,000 steps (small nets), then every level."""
    data_dir = tmp_path_factory.mktemp("offrl_data")
    messages: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OFFRL_DATA_DIR", str(data_dir))
        patch.setenv("MINARI_DATASETS_PATH", str(data_dir / "datasets"))
        config = sac.Config(hidden_dims=(64, 64), actor_learning_rate=1e-3, critic_learning_rate=1e-3,
                            temperature_learning_rate=1e-3)
        paths = make_suite(ENV, list(LEVELS), budget=BUDGET, size=SIZE, seed=0, progress=False,
                           snapshot_every=500, start_steps=500, eval_episodes=5, sac_config=config,
                           log=messages.append)
        datasets = {level: resolve_dataset(dataset_name(ENV, level)) for level in LEVELS}
        yield {"paths": paths, "datasets": datasets, "messages": messages, "data_dir": data_dir, "patch": patch}


def test_levels_are_registered_and_open_in_minari(suite):
    data_dir = suite["data_dir"]
    assert set(suite["paths"]) == set(LEVELS)
    for level, path in suite["paths"].items():
        assert path == data_dir / "datasets" / f"pendulum-{level}-v0"
        opened = minari.load_dataset(f"pendulum-{level}-v0")
        assert opened.total_steps == suite["datasets"][level].num_transitions
        assert opened.storage.metadata["ref_min_score"] == suite["datasets"][level].metadata.ref_min_score


def test_sizes(suite):
    datasets = suite["datasets"]
    for level in ("random", "medium", "expert"):
        assert datasets[level].num_transitions == SIZE
    assert datasets["medium-expert"].num_transitions == 2 * SIZE
    medium_step = datasets["medium"].metadata.provenance["medium_snapshot_step"]
    assert datasets["medium-replay"].num_transitions == min(medium_step, SIZE)


def test_reference_scores_and_returns_are_ordered(suite):
    datasets = suite["datasets"]
    meta = datasets["random"].metadata
    for dataset in datasets.values():  # one pair of reference scores for the whole suite
        assert (dataset.metadata.ref_min_score, dataset.metadata.ref_max_score) == (meta.ref_min_score, meta.ref_max_score)
    assert meta.ref_max_score > meta.ref_min_score
    provenance = datasets["medium"].metadata.provenance
    assert provenance["env_id"] == ENV and provenance["env_version"] == 1
    assert provenance["budget"] == BUDGET and provenance["seed"] == 0 and "offrl_version" in provenance
    assert meta.ref_min_score < provenance["medium_snapshot_return"] < meta.ref_max_score
    returns = {level: complete_episode_returns(d).mean() for level, d in datasets.items()}
    assert returns["random"] < returns["medium"] < returns["expert"]
    scores = {level: normalized_score(r, meta.ref_min_score, meta.ref_max_score) for level, r in returns.items()}
    assert scores["expert"] > 60 and scores["random"] < 40
    assert datasets["expert"].metadata.provenance["behaviour_returns_per_level"]["medium"] == pytest.approx(returns["medium"])


def test_medium_expert_is_medium_then_expert(suite, same_arrays):
    datasets = suite["datasets"]
    medium, expert, both = datasets["medium"], datasets["expert"], datasets["medium-expert"]
    n = medium.num_transitions
    for name in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
        np.testing.assert_array_equal(getattr(both, name), np.concatenate([getattr(medium, name), getattr(expert, name)]))
    np.testing.assert_array_equal(both.episode_starts, np.concatenate([medium.episode_starts, expert.episode_starts + n]))


def test_medium_replay_is_the_buffer_in_collection_order(suite, aligned):
    replay = suite["datasets"]["medium-replay"]
    aligned(replay)
    # One env: episodes are consecutive, each next episode starts where Pendulum reset it;
    # every complete episode is 200 steps (Pendulum's time limit) and ends in a timeout.
    lengths = replay.episode_lengths
    assert np.all(lengths[:-1] == 200)
    assert replay.timeouts[replay.episode_ends - 1].all()
    assert not replay.terminals.any()
    # The first 500 steps were uniform random actions, collected first.
    random_part = replay.actions[:500]
    assert np.abs(random_part).max() > 1.9 and abs(random_part.mean()) < 0.2


def test_rerun_skips_finished_levels(suite):
    messages: list[str] = []
    paths = make_suite(ENV, ["random", "expert"], budget=BUDGET, size=SIZE, progress=False, log=messages.append)
    assert paths == {level: suite["paths"][level] for level in ("random", "expert")}
    assert len(messages) == 2 and all("skipping" in message for message in messages)


def test_collect_transitions_stops_at_budget():
    dataset = collect_transitions(ENV, lambda obs, rng: rng.uniform(-2, 2, size=(len(obs), 1)), 450, seed=1, num_envs=3)
    assert dataset.num_transitions == 450
    assert list(dataset.episode_lengths) == [200, 200, 50]
    assert dataset.timeouts[dataset.episode_ends - 1].all()


def test_replay_dataset_regroups_sub_envs_in_order():
    # Two sub-envs interleaved: env 0 episodes of 2 steps, env 1 one episode of 3 steps then a partial.
    env_index = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    dones = np.zeros(8)
    timeouts = np.array([0, 0, 1, 0, 0, 1, 1, 0], float)
    observations = np.arange(8, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    replay = {"observations": observations, "next_observations": observations + 0.5, "actions": np.zeros((8, 1), np.float32),
              "rewards": np.arange(8, dtype=np.float32), "dones": dones, "timeouts": timeouts, "env_index": env_index}
    dataset = replay_dataset(replay, cut=8, size=100, metadata=DatasetMetadata())
    np.testing.assert_array_equal(dataset.rewards, [0, 2, 1, 3, 5, 4, 6, 7])
    np.testing.assert_array_equal(dataset.episode_starts, [0, 2, 5, 7])
    assert dataset.timeouts[dataset.episode_ends - 1].all()  # the partial one at the cut too
    window = replay_dataset(replay, cut=6, size=4, metadata=DatasetMetadata())
    np.testing.assert_array_equal(window.rewards, [2, 3, 5, 4])
