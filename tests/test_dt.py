"""Decision Transformer: causal masking, the evaluation context, and the engine hooks."""

from __future__ import annotations

from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import serialization

from offrl.algos import dt
from offrl.data.transforms import Normalizer, fit_normalizer
from offrl.errors import ConfigError
from offrl.train.initial_state import init_state
from offrl.train.policy import Policy
from offrl.types import Spec

from dataset_helpers import make_random_dataset

SPEC = Spec(observation_dim=3, action_dim=2)
# Small and without dropout, so outputs are deterministic; a high learning rate so that a few
# updates make every input matter. One config, dataset and batch shape for every test, so each
# program compiles once.
CONFIG = dt.Config(hidden_dims=(32, 32), num_heads=2, context_length=6, max_episode_steps=50,
                   learning_rate=3e-3, warmup_steps=1, dropout_rate=0.0)
UPDATE = jax.jit(lambda state, batch: dt.update(state, batch, CONFIG))
SAMPLE = jax.jit(lambda data, key: dt.sample(data, key, CONFIG))
PREDICT = jax.jit(lambda state, window: state.model.apply_fn(
    state.model.params, window["observations"], window["actions"], window["returns_to_go"], window["timesteps"]))
# Mostly short episodes (windows of 6 steps are often padded) and one long one.
EPISODE_LENGTHS = [3, 2, 8, 5, 1, 9, 4, 6, 2, 7, 3, 30]


def layout(dataset, config=CONFIG):
    return jax.device_put(dt.training_data(dataset, fit_normalizer(dataset, True, False), config))


@pytest.fixture(scope="module")
def trained():
    """A state after 30 updates on random windows, and its data."""
    data = layout(make_random_dataset(EPISODE_LENGTHS, obs_dim=3, action_dim=2))
    state = init_state(dt, jax.random.PRNGKey(0), SPEC, CONFIG)
    for step in range(30):
        state, _ = UPDATE(state, SAMPLE(data, jax.random.PRNGKey(step)))
    return state, data


@pytest.fixture(scope="module")
def policy(trained):
    """A stateful Policy whose normaliser changes nothing: it feeds act_in_context the raw values."""
    normalizer = Normalizer(np.zeros(3, np.float32), np.ones(3, np.float32), -np.ones(2, np.float32), np.ones(2, np.float32))
    return Policy(dt, trained[0], normalizer)


def random_window(seed, batch=1, k=CONFIG.context_length):
    rng = np.random.default_rng(seed)
    return {
        "observations": rng.normal(size=(batch, k, SPEC.observation_dim)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(batch, k, SPEC.action_dim)).astype(np.float32),
        "returns_to_go": rng.normal(size=(batch, k)).astype(np.float32),
        "timesteps": rng.integers(0, 50, size=(batch, k)).astype(np.int32),
    }


def predict(state, window):
    return np.asarray(PREDICT(state, window))


def perturbed(window, field, steps, seed):
    """`window` with `field` changed at the given steps (NumPy, so no new program is compiled)."""
    rng = np.random.default_rng(seed)
    values = window[field].copy()
    if field == "timesteps":
        values[:, steps] = (values[:, steps] + rng.integers(1, 40, size=values[:, steps].shape)) % 50
    else:
        values[:, steps] += 3.0 * rng.normal(size=values[:, steps].shape).astype(np.float32)
    return {**window, field: values}


def test_future_tokens_do_not_influence_the_current_action(trained):
    """a_t is predicted from (R_<=t, s_<=t, a_<t): changing anything later, including a_t itself,
    leaves it bit for bit unchanged (masked attention weights are exactly 0); changing R_t, s_t,
    the timestep t or an earlier action changes it, by far more than float rounding."""
    state = trained[0]
    window = random_window(5)
    base = predict(state, window)
    k = CONFIG.context_length
    for t in range(k):
        seed = 100 + t
        for field in ("observations", "actions", "returns_to_go", "timesteps"):
            if t + 1 < k:
                later = predict(state, perturbed(window, field, list(range(t + 1, k)), seed))
                np.testing.assert_array_equal(later[:, : t + 1], base[:, : t + 1], err_msg=f"{field} after step {t}")
        same_step_action = predict(state, perturbed(window, "actions", [t], seed))
        np.testing.assert_array_equal(same_step_action[:, t], base[:, t], err_msg=f"a_{t} at step {t}")
        for field in ("observations", "returns_to_go", "timesteps"):
            changed = predict(state, perturbed(window, field, [t], seed))
            assert np.abs(changed[:, t] - base[:, t]).max() > 1e-5, f"{field} at step {t} had no effect"
        if t > 0:
            changed = predict(state, perturbed(window, "actions", [t - 1], seed))
            assert np.abs(changed[:, t] - base[:, t]).max() > 1e-5, f"a_{t - 1} had no effect on step {t}"


def test_loss_counts_only_real_steps(trained):
    """Padding carries no loss: changing the padded actions of a batch leaves the loss unchanged,
    changing real ones does not."""
    state, data = trained
    batch = SAMPLE(data, jax.random.PRNGKey(100))
    mask = np.asarray(batch.windows.mask)[..., None]
    actions = np.asarray(batch.windows.actions)
    assert 0.2 < float(mask.mean()) < 0.9

    def loss_with_actions(actions):
        return float(UPDATE(state, batch.replace(windows=batch.windows.replace(actions=actions)))[1]["actor_loss"])

    loss = loss_with_actions(actions)
    assert loss_with_actions(np.where(mask, actions, 0.7)) == pytest.approx(loss, rel=1e-6)
    assert abs(loss_with_actions(np.where(mask, -actions, 0.0)) - loss) > 1e-3


def pad(rows, k):
    """Stack `rows` and pad them with zeros to `k` steps, as a batch of one window."""
    rows = np.asarray(np.stack(rows), np.float32)
    return np.concatenate([rows, np.zeros((k - len(rows),) + rows.shape[1:], np.float32)])[None]


def test_acting_in_context_matches_the_network_on_the_episode_window(trained, policy):
    """Step by step through the stateful Policy (act_in_context) = the network on the last K steps
    of the episode, with returns-to-go = target minus the rewards so far and timesteps counted from
    the episode's start; a start (same-step autoreset) begins a fresh history for that env only."""
    state = trained[0].replace(target_return=jnp.asarray(40.0, jnp.float32))
    policy.state = state
    policy.reset()
    assert policy.stateful
    k, scale = CONFIG.context_length, state.return_scale
    rng = np.random.default_rng(0)
    envs, steps = 2, k + 4
    observations = rng.normal(size=(steps, envs, 3)).astype(np.float32)
    rewards = rng.uniform(-3.0, 5.0, size=(steps, envs)).astype(np.float32)
    starts = np.zeros((steps, envs), bool)
    starts[7, 1] = True  # env 1 begins a new episode at step 7
    history = [[] for _ in range(envs)]  # [observation, reward received before it, action] per step
    for step in range(steps):
        actions = policy(observations[step], rewards[step], starts[step])
        for env in range(envs):
            if starts[step, env] or step == 0:
                history[env] = []
            history[env].append([observations[step, env], rewards[step, env], np.zeros(2, np.float32)])
            episode = history[env]
            rtg = [40.0 / scale]
            for _, reward, _ in episode[1:]:
                rtg.append(rtg[-1] - reward / scale)
            first = max(0, len(episode) - k)
            steps_held = len(episode) - first
            # The episode's last (at most) K steps, right-padded to K with zeros (causal attention:
            # the padding after the current step cannot change its action).
            window = {
                "observations": pad([o for o, _, _ in episode[first:]], k),
                "actions": pad([a for _, _, a in episode[first:]], k),
                "returns_to_go": pad(rtg[first:], k),
                "timesteps": pad(np.arange(first, len(episode)), k).astype(np.int32),
            }
            np.testing.assert_allclose(actions[env], predict(state, window)[0, steps_held - 1], rtol=1e-5, atol=1e-5,
                                       err_msg=f"step {step} env {env}")
            episode[-1][2] = np.asarray(actions[env])


def test_policy_resets_between_evaluations(trained, policy):
    policy.state = trained[0]
    policy.reset()
    observations = np.random.default_rng(1).normal(size=(3, 2, 3)).astype(np.float32)
    first = [policy(o, rewards=np.ones(2)) for o in observations]
    policy.reset()
    again = [policy(o, rewards=np.ones(2)) for o in observations]
    np.testing.assert_allclose(np.stack(first), np.stack(again), rtol=1e-6)
    # History matters: the third observation after two others is not the same as it alone.
    policy.reset()
    assert np.abs(policy(observations[2]) - first[2]).max() > 1e-4


def test_target_return_defaults_to_the_best_episode_return(trained):
    dataset = make_random_dataset(EPISODE_LENGTHS, obs_dim=3, action_dim=2, seed=4)
    normalizer = fit_normalizer(dataset, True, False)
    assert float(dt.training_data(dataset, normalizer, CONFIG)["target_return"]) == pytest.approx(
        dataset.episode_returns().max(), rel=1e-6)
    given = layout(dataset, replace(CONFIG, target_return=123.0))
    assert float(given["target_return"]) == 123.0
    # The state takes the target from the data on an update, and a checkpoint (flax state dict
    # restored into a fresh template, as load_policy does) carries it.
    state, _ = UPDATE(trained[0], SAMPLE(given, jax.random.PRNGKey(0)))
    assert float(state.target_return) == 123.0
    restored = serialization.from_state_dict(init_state(dt, jax.random.PRNGKey(1), SPEC, CONFIG), serialization.to_state_dict(state))
    assert float(restored.target_return) == 123.0


@pytest.mark.parametrize("change, flag", [
    ({"hidden_dims": (32, 64)}, "--hidden-dims"),
    ({"num_heads": 3}, "--num-heads"),
    ({"context_length": 0}, "--context-length"),
    ({"return_scale": 0.0}, "--return-scale"),
])
def test_bad_config_names_the_flag(change, flag):
    with pytest.raises(ConfigError, match=flag):
        dt.init(jax.random.PRNGKey(0), SPEC, replace(CONFIG, **change))
