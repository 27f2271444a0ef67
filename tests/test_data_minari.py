"""Minari reading and writing: alignment, exact round trips, Minari's own view of our files."""

from __future__ import annotations

import json
import warnings

import gymnasium as gym
import minari
import numpy as np
import pytest
from minari.data_collector import EpisodeBuffer
from minari.namespace import list_local_namespaces

from offrl.data.dataset import DatasetMetadata
from offrl.data.load import load_dataset
from offrl.data.minari_io import OFFRL_METADATA_KEY, read_minari, write_minari
from offrl.errors import DatasetError


@pytest.fixture(autouse=True)
def _private_minari_root(minari_root):
    """Every test here writes only under a temporary MINARI_DATASETS_PATH."""
    return minari_root


def _quiet_create(dataset_id, buffers, **kwargs):
    """minari.create_dataset_from_buffers without its warnings about missing author etc."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return minari.create_dataset_from_buffers(dataset_id, buffers, **kwargs)


def _expected_minari_episodes(dataset):
    """What each Minari episode must hold for an offrl dataset with continuous episodes."""
    for start, end in zip(dataset.episode_starts, dataset.episode_ends):
        yield {
            "observations": np.concatenate([dataset.observations[start:end], dataset.next_observations[end - 1 : end]]),
            "actions": dataset.actions[start:end],
            "rewards": dataset.rewards[start:end],
            "terminations": dataset.terminals[start:end],
            "truncations": dataset.timeouts[start:end],
        }


# ------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("env_id", [None, "NotARegisteredEnv-v3", "Pendulum-v1"])
def test_round_trip_is_exact(make_dataset, same_arrays, aligned, minari_root, env_id):
    original = make_dataset([5, 1, 7, 3, 4], obs_dim=3, action_dim=1, seed=1, ends=["terminal", "timeout", "timeout", "terminal", "none"])
    original.metadata.env_id = env_id
    path = write_minari(original, "offrl/roundtrip-v0")
    assert path == minari_root / "offrl" / "roundtrip-v0"

    for loaded in (read_minari(str(path)), read_minari("offrl/roundtrip-v0"), load_dataset(path)):
        same_arrays(loaded, original)
        aligned(loaded)
        assert loaded.metadata.env_id == env_id
        assert loaded.metadata.ref_min_score == original.metadata.ref_min_score
        assert loaded.metadata.ref_max_score == original.metadata.ref_max_score
        np.testing.assert_array_equal(loaded.metadata.action_low, original.metadata.action_low)
        np.testing.assert_array_equal(loaded.metadata.action_high, original.metadata.action_high)
        assert loaded.metadata.name == "offrl/roundtrip-v0"
        assert loaded.metadata.source == str(path)
        provenance = dict(loaded.metadata.provenance)
        assert provenance.pop("minari")["total_steps"] == original.num_transitions
        assert provenance == original.metadata.provenance


def test_round_trip_keeps_trailing_partial_episode_and_unknown_bounds(make_dataset, same_arrays):
    original = make_dataset([4, 6], ends=["timeout", "none"])
    original.metadata.action_low = original.metadata.action_high = None
    original.metadata.ref_min_score = original.metadata.ref_max_score = None
    loaded = read_minari(str(write_minari(original, "partial-v1")))
    same_arrays(loaded, original)
    assert not loaded.terminals[-1] and not loaded.timeouts[-1]
    assert list(loaded.episode_lengths) == [4, 6]
    assert loaded.metadata.action_low is None and loaded.metadata.action_high is None
    assert loaded.metadata.ref_min_score is None and loaded.metadata.ref_max_score is None


def test_rewriting_a_read_dataset_is_stable(make_dataset, same_arrays):
    original = make_dataset([3, 5, 2])
    first = read_minari(str(write_minari(original, "first-v0")))
    second = read_minari(str(write_minari(first, "second-v0")))
    same_arrays(second, original)
    assert second.metadata.provenance["minari"]["description"] == first.metadata.provenance["minari"]["description"]
    strip = lambda p: {k: v for k, v in p.items() if k != "minari"}  # noqa: E731
    assert strip(second.metadata.provenance) == strip(first.metadata.provenance) == original.metadata.provenance


# ------------------------------------------------------------- Minari's view of our files
def test_written_dataset_opens_with_minari_unchanged(make_dataset):
    original = make_dataset([6, 2, 5, 3], obs_dim=3, action_dim=1, seed=3)
    original.metadata.env_id = "Pendulum-v1"
    original.metadata.action_low = np.array([-2.0], np.float32)
    original.metadata.action_high = np.array([2.0], np.float32)
    write_minari(original, "offrl/pendulum-test-v0")

    loaded = minari.load_dataset("offrl/pendulum-test-v0")
    assert list(minari.list_local_datasets()) == ["offrl/pendulum-test-v0"]  # no temporary leftovers
    assert "offrl" in list_local_namespaces()
    assert loaded.total_episodes == original.num_episodes
    assert loaded.total_steps == original.num_transitions
    assert loaded.env_spec is not None and loaded.env_spec.id == "Pendulum-v1"
    assert loaded.action_space == gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    episodes = list(loaded.iterate_episodes())
    expected = list(_expected_minari_episodes(original))
    assert len(episodes) == len(expected)
    for episode, want in zip(episodes, expected):
        assert episode.observations.shape[0] == len(episode.rewards) + 1
        for key, values in want.items():
            np.testing.assert_array_equal(getattr(episode, key), values, err_msg=key)

    returns = np.array([original.metadata.ref_min_score, original.metadata.ref_max_score, 0.0])
    scores = minari.get_normalized_score(loaded, returns)
    lo, hi = original.metadata.ref_min_score, original.metadata.ref_max_score
    np.testing.assert_allclose(scores, [0.0, 1.0, (0.0 - lo) / (hi - lo)])
    env = loaded.recover_environment()
    assert env.spec.id == "Pendulum-v1"
    env.close()


def test_writing_never_builds_or_rolls_out_an_environment(make_dataset, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("write_minari must not create an environment")

    monkeypatch.setattr(gym, "make", refuse)
    monkeypatch.setattr(minari.utils, "get_average_reference_score", refuse)
    original = make_dataset([3, 4], obs_dim=3, action_dim=1)
    original.metadata.env_id = "Pendulum-v1"
    write_minari(original, "no-rollout-v0")
    metadata = minari.load_dataset("no-rollout-v0").storage.metadata
    assert metadata["ref_min_score"] == original.metadata.ref_min_score
    assert metadata["ref_max_score"] == original.metadata.ref_max_score


def test_write_respects_explicit_root(make_dataset, same_arrays, tmp_path, minari_root):
    other_root = tmp_path / "elsewhere"
    original = make_dataset([2, 3])
    path = write_minari(original, "rooted-v0", root=other_root)
    assert path == other_root / "rooted-v0"
    assert not (minari_root / "rooted-v0").exists()
    same_arrays(read_minari(str(path)), original)


def test_refuses_existing_dataset_unless_overwrite(make_dataset, same_arrays, minari_root):
    first, second = make_dataset([3, 3], seed=1), make_dataset([4], seed=2, ends=["terminal"])
    write_minari(first, "taken-v0")
    with pytest.raises(DatasetError, match="'taken-v0' already exists"):
        write_minari(second, "taken-v0")
    same_arrays(read_minari("taken-v0"), first)
    write_minari(second, "taken-v0", overwrite=True)
    same_arrays(read_minari("taken-v0"), second)
    assert sorted(p.name for p in minari_root.iterdir()) == ["taken-v0"]


def test_overwrite_refuses_a_directory_that_is_not_a_dataset(make_dataset, minari_root):
    (minari_root / "precious-v0").mkdir()
    (minari_root / "precious-v0" / "notes.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="not a Minari dataset directory"):
        write_minari(make_dataset([2]), "precious-v0", overwrite=True)
    assert (minari_root / "precious-v0" / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("bad_id", ["no-version", "two words-v0", ""])
def test_malformed_dataset_id(make_dataset, bad_id):
    with pytest.raises(DatasetError, match="malformed"):
        write_minari(make_dataset([2]), bad_id)


@pytest.mark.parametrize("overwrite", [False, True])
def test_crash_while_writing_leaves_nothing_half_written(make_dataset, same_arrays, minari_root, monkeypatch, overwrite):
    from minari.dataset._storages.hdf5_storage import HDF5Storage

    old = make_dataset([2, 2], seed=5)
    if overwrite:
        write_minari(old, "crashy-v0")
    real_update = HDF5Storage.update_episodes

    def crash_after_first_episode(self, episodes):
        episodes = list(episodes)
        real_update(self, episodes[:1])
        raise RuntimeError("disk full")

    monkeypatch.setattr(HDF5Storage, "update_episodes", crash_after_first_episode)
    with pytest.raises(RuntimeError, match="disk full"):
        write_minari(make_dataset([3, 4, 5], seed=6), "crashy-v0", overwrite=overwrite)
    assert [p.name for p in minari_root.iterdir()] == (["crashy-v0"] if overwrite else [])
    if overwrite:
        same_arrays(read_minari("crashy-v0"), old)
    else:
        with pytest.raises(DatasetError, match="crashy-v0"):
            read_minari("crashy-v0")


def test_discontinuous_episode_is_split_without_losing_transitions(make_dataset, minari_root):
    original = make_dataset([6, 3], ends=["timeout", "terminal"])
    next_obs = original.next_observations.copy()
    next_obs[2] += 1.0  # row 3 does not continue row 2
    original = original.replace(next_observations=next_obs)
    with pytest.warns(UserWarning, match="1 episode"):
        path = write_minari(original, "split-v0")
    loaded = read_minari(str(path))
    for name in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(original, name), err_msg=name)
    assert list(loaded.episode_starts) == [0, 3, 6]
    assert not loaded.terminals[2] and not loaded.timeouts[2]
    meta = json.loads((path / "data" / "metadata.json").read_text())
    assert meta[OFFRL_METADATA_KEY]["split_discontinuous_episodes"] == 1


# ------------------------------------------------------- datasets written by Minari itself
def test_reads_dataset_recorded_by_minari_data_collector(aligned):
    env = minari.DataCollector(gym.make("Hopper-v5", max_episode_steps=15))
    env.action_space.seed(0)
    falling = -np.ones(3, dtype=np.float32)  # Hopper falls (terminates) within ~6 steps
    for episode in range(6):
        env.reset(seed=episode)
        while True:
            action = falling if episode % 3 == 2 else env.action_space.sample()
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                break
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env.create_dataset("test/hopper-random-v0", algorithm_name="random", author="offrl tests", author_email="none", code_permalink="none", description="test")
    env.close()

    raw = list(minari.load_dataset("test/hopper-random-v0").iterate_episodes())
    ends = [(bool(e.terminations[-1]), bool(e.truncations[-1])) for e in raw]
    assert (True, False) in ends and (False, True) in ends, ends  # both kinds of episode end

    dataset = read_minari("test/hopper-random-v0")
    aligned(dataset)
    # The env Minari recorded, with the collector's 15-step limit (not the registered 1,000).
    assert dataset.metadata.env_id == 'Hopper-v5 {"max_episode_steps":15}'
    np.testing.assert_array_equal(dataset.metadata.action_low, -np.ones(3))
    assert dataset.metadata.provenance["minari"]["author"] == ["offrl tests"]
    assert list(dataset.episode_lengths) == [len(e.rewards) for e in raw]
    for index, episode in enumerate(raw):
        part = dataset.episode(index)
        np.testing.assert_array_equal(part["observations"], episode.observations[:-1].astype(np.float32))
        np.testing.assert_array_equal(part["next_observations"], episode.observations[1:].astype(np.float32))
        np.testing.assert_array_equal(part["actions"], episode.actions)
        np.testing.assert_array_equal(part["rewards"], episode.rewards.astype(np.float32))
        np.testing.assert_array_equal(part["terminals"], episode.terminations)
        np.testing.assert_array_equal(part["timeouts"], episode.truncations)
    # Terminations stay terminals and truncations stay timeouts, on the episodes' last rows.
    last = dataset.episode_ends - 1
    assert list(dataset.terminals[last]) == [t for t, _ in ends]
    assert list(dataset.timeouts[last]) == [t for _, t in ends]
    assert dataset.terminals.sum() + dataset.timeouts.sum() == len(raw)


def _box_buffers(rng, lengths, obs_dim=2, action_dim=1, flags=None):
    buffers = []
    for i, length in enumerate(lengths):
        terminations, truncations = [False] * length, [False] * length
        term, trunc = flags[i] if flags else (True, False)
        terminations[-1], truncations[-1] = term, trunc
        buffers.append(
            EpisodeBuffer(
                observations=rng.normal(size=(length + 1, obs_dim)).astype(np.float32),
                actions=rng.uniform(-1, 1, size=(length, action_dim)).astype(np.float32),
                rewards=list(rng.normal(size=length)),
                terminations=terminations,
                truncations=truncations,
            )
        )
    return buffers


def test_step_both_terminated_and_truncated_counts_as_terminal():
    rng = np.random.default_rng(0)
    box = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    act = gym.spaces.Box(-1, 1, (1,), np.float32)
    buffers = _box_buffers(rng, [3, 4, 2], flags=[(True, True), (False, True), (True, False)])
    _quiet_create("both-flags-v0", buffers, observation_space=box, action_space=act)
    dataset = read_minari("both-flags-v0")
    assert list(dataset.terminals[dataset.episode_ends - 1]) == [True, False, True]
    assert list(dataset.timeouts[dataset.episode_ends - 1]) == [False, True, False]
    assert dataset.metadata.provenance["minari"]["steps_both_terminated_and_truncated"] == 1
    assert dataset.metadata.env_id is None


def test_nested_dict_observation_space_is_refused():
    """A Dict of flat Boxes is read (tests/test_goal_conditioned.py); a Dict inside it (D4RL/kitchen's
    per-task goals) is refused with the key named."""
    rng = np.random.default_rng(0)
    space = gym.spaces.Dict({"goal": gym.spaces.Dict({"kettle": gym.spaces.Box(-1, 1, (2,), np.float32)}),
                             "pos": gym.spaces.Box(-1, 1, (2,), np.float32)})
    buffer = EpisodeBuffer(
        observations={"goal": {"kettle": rng.uniform(-1, 1, size=(4, 2)).astype(np.float32)},
                      "pos": rng.uniform(-1, 1, size=(4, 2)).astype(np.float32)},
        actions=rng.uniform(-1, 1, size=(3, 1)).astype(np.float32),
        rewards=[0.0, 0.0, 1.0],
        terminations=[False, False, True],
        truncations=[False, False, False],
    )
    _quiet_create("dict-obs-v0", [buffer], observation_space=space, action_space=gym.spaces.Box(-1, 1, (1,), np.float32))
    with pytest.raises(DatasetError, match=r"observation\['goal'\] space Dict.*only flat"):
        read_minari("dict-obs-v0")


def test_actions_outside_bounds_are_refused_or_clipped():
    rng = np.random.default_rng(0)
    buffers = _box_buffers(rng, [3, 3])
    buffers[1].actions[1, 0] = 1.5  # outside the action space [-1, 1]
    box = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    _quiet_create("wild-actions-v0", buffers, observation_space=box, action_space=gym.spaces.Box(-1, 1, (1,), np.float32))
    with pytest.raises(DatasetError, match="'actions' row 4 dimension 0 is 1.5"):
        read_minari("wild-actions-v0")
    clipped = read_minari("wild-actions-v0", clip_actions=True)
    assert clipped.actions[4, 0] == 1.0
    assert clipped.metadata.provenance["clipped_action_values"] == 1
    np.testing.assert_array_equal(np.delete(clipped.actions, 4, axis=0), np.delete(np.concatenate([b.actions for b in buffers]), 4, axis=0))


# --------------------------------------------------------------------------- bad inputs
def test_unknown_dataset_id_is_a_dataset_error():
    with pytest.raises(DatasetError, match="'nothing/here-v0' is neither a directory nor the id"):
        read_minari("nothing/here-v0")


def test_directory_without_minari_data(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="not a Minari dataset directory"):
        read_minari(str(tmp_path / "empty"))


def test_dataset_id_is_not_shadowed_by_a_same_named_local_directory(make_dataset, same_arrays, tmp_path, monkeypatch):
    original = make_dataset([2, 3])
    write_minari(original, "shadow/ds-v0")
    (tmp_path / "cwd" / "shadow" / "ds-v0").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "cwd")
    same_arrays(read_minari("shadow/ds-v0"), original)


def test_a_plain_file_is_not_a_minari_dataset(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DatasetError, match="is a file; expected a Minari dataset directory"):
        read_minari(str(tmp_path / "file.txt"))


def test_corrupted_main_data_file(make_dataset):
    path = write_minari(make_dataset([3, 2]), "corrupt-v0")
    (path / "data" / "main_data.hdf5").write_bytes(b"this is not hdf5 at all" * 10)
    with pytest.raises(DatasetError, match="could not be read"):
        read_minari(str(path))


def test_malformed_metadata_json(make_dataset):
    path = write_minari(make_dataset([3, 2]), "badmeta-v0")
    (path / "data" / "metadata.json").write_text("{ not json")
    with pytest.raises(DatasetError, match="could not be read"):
        load_dataset(path)


def test_metadata_and_offrl_fields_survive_through_minari(make_dataset):
    original = make_dataset([2, 2])
    original.metadata = DatasetMetadata(
        name="mine",
        env_id="MyEnv-v0",
        ref_min_score=0.5,
        ref_max_score=2.0,
        action_low=np.array([-1.0, -2.0], np.float32),
        action_high=np.array([1.0, 2.0], np.float32),
        provenance={"algorithm_name": "SAC", "author": "someone", "checkpoint_step": np.int64(3)},
    )
    path = write_minari(original, "meta-v0")
    raw = minari.load_dataset("meta-v0").storage.metadata
    assert raw["algorithm_name"] == "SAC" and raw["author"] == {"someone"}
    assert raw["ref_min_score"] == 0.5 and raw["ref_max_score"] == 2.0
    loaded = read_minari(str(path))
    assert loaded.metadata.env_id == "MyEnv-v0"
    assert loaded.metadata.provenance["checkpoint_step"] == 3
    np.testing.assert_array_equal(loaded.metadata.action_high, [1.0, 2.0])


def test_reads_reference_scores_of_a_minari_native_dataset(aligned):
    rng = np.random.default_rng(1)
    buffers = _box_buffers(rng, [4, 5], obs_dim=3, flags=[(True, False), (False, True)])
    _quiet_create("native-pendulum-v0", buffers, env="Pendulum-v1", ref_min_score=-1200.0, ref_max_score=-150.0)
    dataset = read_minari("native-pendulum-v0")
    aligned(dataset)
    assert (dataset.metadata.ref_min_score, dataset.metadata.ref_max_score) == (-1200.0, -150.0)
    assert dataset.metadata.env_id == "Pendulum-v1"
    np.testing.assert_array_equal(dataset.metadata.action_low, [-2.0])  # Pendulum's own action space
    np.testing.assert_array_equal(dataset.observations[:4], buffers[0].observations[:-1])
    np.testing.assert_array_equal(dataset.next_observations[4:], buffers[1].observations[1:])


def test_damaged_offrl_bounds_in_metadata(make_dataset):
    path = write_minari(make_dataset([2, 2], action_dim=2), "bounds-v0")
    meta_file = path / "data" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta[OFFRL_METADATA_KEY]["action_low"] = [-1.0, -1.0, -1.0]
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="expected 2 numbers each"):
        read_minari(str(path))
