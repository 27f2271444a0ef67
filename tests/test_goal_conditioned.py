"""Goal-conditioned Minari datasets (Dict observations, as D4RL/antmaze's): read as flat vectors,
evaluated in the dataset's own evaluation env, flattened the same way."""

from __future__ import annotations

import dataclasses
import json
import warnings

import gymnasium as gym
import minari
import numpy as np
import pytest

from goal_env import GOAL_REACH_ID
from offrl.algos import get_algorithm
from offrl.data.minari_io import read_minari
from offrl.envs.factory import check_env_id, make_vector_env, split_env_id
from offrl.errors import ConfigError
from offrl.train.offline import TrainConfig, train_offline

EVAL_GOAL = [0.5, -0.5]
EVAL_STEPS = 30


@pytest.fixture
def goal_dataset(minari_root):
    """Random-action episodes in the env with its default goal; the evaluation env (Minari's
    `eval_env_spec`) fixes another goal and a shorter limit, as D4RL AntMaze's does."""
    env = minari.DataCollector(gym.make(GOAL_REACH_ID, max_episode_steps=12))
    env.action_space.seed(0)
    for episode in range(4):
        env.reset(seed=episode)
        for _ in range(12):
            env.step(env.action_space.sample())
    eval_spec = dataclasses.replace(gym.spec(GOAL_REACH_ID), kwargs={"goal": EVAL_GOAL}, max_episode_steps=EVAL_STEPS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env.create_dataset("test/goal-reach-v0", eval_env=eval_spec, algorithm_name="random", author="offrl tests",
                           author_email="none", code_permalink="none", description="test")
    env.close()
    return "test/goal-reach-v0"


def test_dict_observations_are_read_as_one_vector_in_gymnasiums_order(goal_dataset):
    raw = list(minari.load_dataset(goal_dataset).iterate_episodes())
    space = minari.load_dataset(goal_dataset).observation_space
    dataset = read_minari(goal_dataset)
    assert dataset.spec.observation_dim == 7
    first = raw[0].observations
    expected = np.stack([gym.spaces.flatten(space, {key: first[key][t] for key in first}) for t in range(13)])
    np.testing.assert_array_equal(dataset.episode(0)["observations"], expected[:-1])
    np.testing.assert_array_equal(dataset.episode(0)["next_observations"], expected[1:])
    np.testing.assert_array_equal(dataset.observations[:, :2], np.concatenate([e.observations["achieved_goal"][:-1] for e in raw]))
    assert dataset.metadata.provenance["minari"]["observation_keys"] == {"achieved_goal": 2, "desired_goal": 2, "observation": 3}


def test_the_evaluation_env_is_the_datasets_with_its_goal_and_limit(goal_dataset):
    env_id = read_minari(goal_dataset).metadata.env_id
    name, overrides = split_env_id(env_id)
    assert name == GOAL_REACH_ID
    assert overrides == {"kwargs": {"goal": EVAL_GOAL}, "max_episode_steps": EVAL_STEPS}
    envs = make_vector_env(env_id, 2)
    try:
        observations, _ = envs.reset(seed=0)
        assert observations.shape == (2, 7)
        np.testing.assert_array_equal(observations[:, 2:4], [EVAL_GOAL, EVAL_GOAL])  # desired_goal, flattened
        for step in range(EVAL_STEPS):
            observations, _, terminated, truncated, _ = envs.step(np.zeros((2, 2), np.float32))
        assert truncated.all() and not terminated.any()  # the dataset's 30-step limit, not the registered 50
    finally:
        envs.close()


def test_training_evaluates_in_the_datasets_evaluation_env(goal_dataset, tmp_path):
    algo = get_algorithm("bc")
    train = TrainConfig(steps=20, eval_every=20, log_every=10, eval_episodes=2, seed=0)
    train_offline(algo, algo.Config(hidden_dims=(16, 16)), read_minari(goal_dataset), train, tmp_path / "run", progress=False)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert split_env_id(saved["env_id"])[1]["kwargs"] == {"goal": EVAL_GOAL}
    evals = [json.loads(line) for line in (tmp_path / "run" / "eval.jsonl").read_text().splitlines()]
    assert len(evals) == 1 and len(evals[0]["returns"]) == 2


@pytest.mark.parametrize("env_id", [GOAL_REACH_ID + " {not json", GOAL_REACH_ID + ' {"gravity": 1}', GOAL_REACH_ID + ' {"kwargs": 3}',
                                    GOAL_REACH_ID + ' {"max_episode_steps": "x"}', GOAL_REACH_ID + ' {"max_episode_steps": 0}'])
def test_an_env_id_with_malformed_overrides_is_one_sentence(env_id):
    with pytest.raises(ConfigError, match=r"^Environment id .* expected 'ID' or 'ID \{") as error:
        check_env_id(env_id)
    assert str(error.value).count(". ") == 0


def test_a_robotics_env_without_gymnasium_robotics_names_the_extra(monkeypatch):
    """D4RL/antmaze's evaluation env is gymnasium-robotics' AntMaze: without that package the
    sentence says which extra installs it."""
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.delitem(gym.registry, "AntMaze_UMaze-v5", raising=False)  # as if gymnasium-robotics never ran
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gymnasium_robotics" else real_find_spec(name, *a))
    with pytest.raises(ConfigError, match=r"Unknown Gymnasium environment id 'AntMaze_UMaze-v5' \(gymnasium-robotics registers it: pip install 'offrl\[robotics\]'\)"):
        check_env_id('AntMaze_UMaze-v5 {"max_episode_steps":700}')


def test_an_argument_the_env_does_not_take_is_one_sentence():
    with pytest.raises(ConfigError, match=r"^Environment id .* passes arguments the env does not take \(.*'gravity'\); expected only") as error:
        make_vector_env(GOAL_REACH_ID + ' {"kwargs": {"gravity": 1}}', 1)
    assert "\n" not in str(error.value)


def test_overrides_that_change_the_health_check_leave_no_termination_function():
    """The hand-written boxes read the default envs' observations: an id that moves the x position
    into the observation or turns the health check off must not use them."""
    from offrl.envs.termination import has_termination_function

    assert has_termination_function('Hopper-v5 {"max_episode_steps":15}')
    for kwargs in ('{"exclude_current_positions_from_observation":false}', '{"terminate_when_unhealthy":false}',
                   '{"healthy_z_range":[0.5,2.0]}'):
        assert not has_termination_function('Hopper-v5 {"kwargs":' + kwargs + '}')
