"""COMBO (offrl/algos/model_based/combo.py): where its conservative term lowers and raises Q,
against a hand computation on a tiny mixed batch; with cql_weight 0 it is SAC on the mixed batch;
the engine's batch layout it relies on (dataset rows first); presets; bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.training.train_state import TrainState
from scipy.special import logsumexp

from offrl.algos.model_based import combo
from offrl.cli import main
from offrl.data.d4rl_io import write_npz
from offrl.errors import ConfigError
from offrl.models.buffer import empty_model_buffer
from offrl.nets import TanhGaussianPolicy
from offrl.train.initial_state import init_state
from offrl.train.model_rollouts import mixed_batch
from offrl.train.presets import load_presets
from offrl.types import Batch, Spec

from dataset_helpers import random_batch
from reliability_helpers import pendulum_shaped_dataset

ROWS, REAL = 8, 4  # real_ratio 0.5: rows 0-3 are dataset rows, 4-7 model rows
SPEC = Spec(3, 2)


def tiny_config(**changes) -> combo.Config:
    # Actor lr 0: the actor steps first on every row, so with a moving actor a change to any row
    # would reach the critic's policy samples; frozen, the conservative term's rows are the only path.
    settings = dict(hidden_dims=(8, 8), batch_size=ROWS, num_sampled_actions=2, actor_learning_rate=0.0,
                    cql_temperature=0.7, conservative_states="model", model_buffer_capacity=16, rollout_batch=8, horizon=2)
    return combo.Config(**{**settings, **changes})


def tiny_batch() -> Batch:
    return random_batch(n=ROWS, obs_dim=SPEC.observation_dim, action_dim=SPEC.action_dim, seed=2, done_rate=0.3)


def with_row(batch: Batch, field: str, row: int, value) -> Batch:
    return batch.replace(**{field: getattr(batch, field).at[row].set(value)})


@pytest.fixture(scope="module")
def state():
    return init_state(combo, jax.random.PRNGKey(0), SPEC, tiny_config())


_UPDATES = {}


def update(state, batch, config):
    if config not in _UPDATES:  # one compile per config
        _UPDATES[config] = jax.jit(lambda s, b: combo.update(s, b, config))
    return _UPDATES[config](state, batch)


@jax.jit
def _critic_values(critic, observations, actions):
    return critic.apply_fn(critic.params, observations, actions)


def q_values(agent, observations, actions) -> np.ndarray:
    """(critics, rows) Q-values under the critic parameters the update starts from."""
    return np.asarray(_critic_values(agent.critic, jnp.asarray(observations), jnp.asarray(actions)))


def hand_gap(agent, batch: Batch, config: combo.Config, pushed_down, pushed_up) -> float:
    """CQL(H)'s gap, averaged over the two critics, written out row by row: for each pushed-down
    row b, temp * logsumexp over its N uniform actions (+ d log 2), N policy actions at s_b and N
    policy actions drawn at s'_b (- log pi), all scored at s_b; minus the mean Q(s, a) of the
    pushed-up rows at their dataset actions. The draws are the update's: its keys from the
    agent's rng, one policy call over [s tiled N times, s' tiled N times] (row j * batch + b)."""
    _, _, policy_key, uniform_key = jax.random.split(agent.rng, 4)
    n, temperature = config.num_sampled_actions, config.cql_temperature
    rows, action_dim = batch.actions.shape
    observations, next_observations = np.asarray(batch.observations), np.asarray(batch.next_observations)
    tiled = np.concatenate([np.tile(observations, (n, 1)), np.tile(next_observations, (n, 1))])
    actions, log_probs = agent.actor.apply_fn(agent.actor.params, jnp.asarray(tiled), policy_key, method=TanhGaussianPolicy.sample)
    actions, log_probs = np.asarray(actions), np.asarray(log_probs)
    uniform = np.asarray(jax.random.uniform(uniform_key, (n * rows, action_dim), minval=-1.0, maxval=1.0))
    pushed_down, pushed_up = list(pushed_down), list(pushed_up)
    samples, scores = [], []  # per pushed-down row: its 3N actions and their importance terms
    for b in pushed_down:
        for j in range(n):
            samples += [uniform[j * rows + b], actions[j * rows + b], actions[(n + j) * rows + b]]
            scores += [action_dim * np.log(2.0), -log_probs[j * rows + b], -log_probs[(n + j) * rows + b]]
    q_sampled = q_values(agent, np.repeat(observations[pushed_down], 3 * n, axis=0), np.stack(samples))
    q_sampled = (q_sampled + np.array(scores)).reshape(2, len(pushed_down), 3 * n)
    q_data = q_values(agent, observations[pushed_up], np.asarray(batch.actions)[pushed_up])
    gaps = []
    for critic in range(2):
        pushed_down_terms = [temperature * logsumexp(q_sampled[critic, row] / temperature) for row in range(len(pushed_down))]
        gaps.append(np.mean(pushed_down_terms) - q_data[critic].mean())
    return float(np.mean(gaps))


def pushed_down_part(state, batch, config) -> float:
    """The logsumexp half of the gap: the gap plus the mean Q on the dataset rows' (s, a)."""
    _, metrics = update(state, batch, config)
    return float(metrics["cql_gap"]) + q_values(state.agent, batch.observations, batch.actions)[:, :REAL].mean()


def test_q_is_pushed_down_at_model_states_only(state):
    """conservative_states "model" (the paper's rho): the gap is the hand computation's with the
    logsumexp over the model rows (4-7) and Q raised on the dataset rows (0-3); a dataset row's
    s and s' do not reach the logsumexp term, a model row's do."""
    config = tiny_config(conservative_states="model")
    batch = tiny_batch()
    _, metrics = update(state, batch, config)
    np.testing.assert_allclose(float(metrics["cql_gap"]), hand_gap(state.agent, batch, config, range(REAL, ROWS), range(REAL)),
                               rtol=1e-4)
    assert float(metrics["cql_penalty"]) == pytest.approx(2 * config.cql_weight * float(metrics["cql_gap"]), rel=1e-5)
    before = pushed_down_part(state, batch, config)
    for field in ("observations", "next_observations"):
        real_changed = with_row(batch, field, 1, jnp.array([2.0, -1.5, 0.7]))
        assert pushed_down_part(state, real_changed, config) == pytest.approx(before, abs=1e-6), field
        model_changed = with_row(batch, field, REAL + 1, jnp.array([2.0, -1.5, 0.7]))
        assert abs(pushed_down_part(state, model_changed, config) - before) > 1e-4, field


def test_q_is_pushed_up_on_the_dataset_rows_actions_only(state):
    """conservative_states "mix" (run_combo.py's default): the gap is the hand computation's with
    the logsumexp over every row and Q raised on the dataset rows only. Changing a dataset row's
    action moves the gap by minus its change in Q over the 4 dataset rows; a model row's action
    (which only its Bellman error sees) leaves the gap as it was."""
    config = tiny_config(conservative_states="mix")
    batch = tiny_batch()
    _, before = update(state, batch, config)
    np.testing.assert_allclose(float(before["cql_gap"]), hand_gap(state.agent, batch, config, range(ROWS), range(REAL)), rtol=1e-4)
    _, model_changed = update(state, with_row(batch, "actions", REAL + 2, jnp.array([0.8, -0.8])), config)
    assert float(model_changed["cql_gap"]) == pytest.approx(float(before["cql_gap"]), abs=1e-6)
    new_action = jnp.array([-0.6, 0.9])
    _, real_changed = update(state, with_row(batch, "actions", 2, new_action), config)
    changed_actions = batch.actions.at[2].set(new_action)
    q_change = (q_values(state.agent, batch.observations, changed_actions) - q_values(state.agent, batch.observations, batch.actions))[:, 2].mean()
    np.testing.assert_allclose(float(real_changed["cql_gap"]) - float(before["cql_gap"]), -q_change / REAL, atol=1e-5)


@jax.jit
def hand_sac_step(agent, batch: Batch):
    """SAC by hand on every row of `batch`, in run_combo.py's order: the actor against the old
    critic, the temperature, then the critics on r + gamma (1 - d) (min_i Q'_i(s', a') - alpha
    log pi(a'|s')) with the new alpha and a' from the new actor. Returns the new parameters."""
    config = SAC_CONFIG
    _, actor_key, policy_key, _ = jax.random.split(agent.rng, 4)

    def adam_step(params, grads, lr):  # a fresh Adam's first step
        return optax.apply_updates(params, optax.adam(lr).update(grads, optax.adam(lr).init(params), params)[0])

    alpha = jnp.exp(agent.temperature.apply_fn(agent.temperature.params))

    def actor_loss(params):
        actions, log_probs = agent.actor.apply_fn(params, batch.observations, actor_key, method=TanhGaussianPolicy.sample)
        return (alpha * log_probs - agent.critic.apply_fn(agent.critic.params, batch.observations, actions).min(0)).mean(), log_probs

    actor_grads, log_probs = jax.grad(actor_loss, has_aux=True)(agent.actor.params)
    actor = adam_step(agent.actor.params, actor_grads, config.actor_learning_rate)
    entropy = -log_probs.mean()
    temperature_grads = jax.grad(lambda p: agent.temperature.apply_fn(p) * (entropy + SPEC.action_dim))(agent.temperature.params)
    temperature = adam_step(agent.temperature.params, temperature_grads, config.temperature_learning_rate)
    new_alpha = jnp.exp(agent.temperature.apply_fn(temperature))

    # a' ~ pi(.|s'): the first of the N next-state draws of the update's one policy call
    n = config.num_sampled_actions
    tiled = jnp.concatenate([jnp.tile(batch.observations, (n, 1)), jnp.tile(batch.next_observations, (n, 1))])
    drawn, drawn_log_probs = agent.actor.apply_fn(actor, tiled, policy_key, method=TanhGaussianPolicy.sample)
    next_actions, next_log_probs = drawn[n * ROWS:(n + 1) * ROWS], drawn_log_probs[n * ROWS:(n + 1) * ROWS]
    next_q = agent.critic.apply_fn(agent.critic_target, batch.next_observations, next_actions).min(0)
    target = batch.rewards + config.discount * (1 - batch.dones) * (next_q - new_alpha * next_log_probs)
    critic_grads = jax.grad(lambda p: ((agent.critic.apply_fn(p, batch.observations, batch.actions) - target) ** 2).mean(1).sum())(
        agent.critic.params)
    critic = adam_step(agent.critic.params, critic_grads, config.critic_learning_rate)
    return actor, temperature, critic, optax.incremental_update(critic, agent.critic_target, config.tau)


SAC_CONFIG = tiny_config(cql_weight=0.0, deterministic_backup=False, actor_learning_rate=1e-3)


def test_cql_weight_zero_is_sac_on_the_mixed_batch(state):
    """Weight 0 with the soft backup: one update equals SAC written out by hand on all 8 rows."""
    batch = tiny_batch()
    agent = state.agent
    actor = TrainState.create(apply_fn=agent.actor.apply_fn, params=agent.actor.params, tx=optax.adam(SAC_CONFIG.actor_learning_rate))
    state = state.replace(agent=agent.replace(actor=actor))
    new, metrics = update(state, batch, SAC_CONFIG)
    expected = hand_sac_step(state.agent, batch)
    got = (new.agent.actor.params, new.agent.temperature.params, new.agent.critic.params, new.agent.critic_target)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6), got, expected)
    assert float(metrics["critic_loss"]) == pytest.approx(float(metrics["bellman_loss"]))


@pytest.mark.parametrize("batch_size, real_ratio", [(7, 0.3)])
def test_the_engine_puts_real_ratio_dataset_rows_first(batch_size, real_ratio):
    """combo.real_rows is the engine's layout: mixed_batch's first rows are the dataset's."""
    buffer = empty_model_buffer(3, 2, 32)
    buffer = buffer.replace(rewards=jnp.full(32, -1.0), size=jnp.int32(32))

    def sample_real(data, key, size):
        fields = {name: jnp.zeros((size, 3)) for name in ("observations", "next_observations")}
        return Batch(actions=jnp.zeros((size, 2)), rewards=jnp.ones(size), dones=jnp.zeros(size), **fields)

    batch = mixed_batch({}, buffer, jax.random.PRNGKey(0), batch_size, real_ratio, sample_real)
    real = combo.real_rows(batch_size, real_ratio)
    assert (np.asarray(batch.rewards[:real]) == 1.0).all() and (np.asarray(batch.rewards[real:]) == -1.0).all()


def test_presets_and_rollouts_follow_run_combo():
    """run_combo.py's suggested hypers (OfflineRL-Kit e3ce697); no reward penalty on rollouts."""
    presets = load_presets("combo")
    assert len(presets) == 9
    assert presets["walker2d-medium-replay-v2"].config == {"horizon": 1, "cql_weight": 0.5}
    assert presets["hopper-medium-v2"].config == {"horizon": 5, "cql_weight": 5.0}
    assert presets["halfcheetah-medium-expert-v2"].config == {"horizon": 5, "cql_weight": 5.0}
    settings = combo.rollout_settings(combo.Config())
    assert settings.penalty_coef == 0.0 and settings.real_ratio == 0.5 and settings.capacity == 50_000 * 5 * 5


@pytest.mark.parametrize("changes, flag", [
    ({"cql_weight": -1.0}, "--cql-weight"),
    ({"cql_temperature": 0.0}, "--cql-temperature"),
    ({"num_sampled_actions": 0}, "--num-sampled-actions"),
    ({"conservative_states": "real"}, "--conservative-states"),
    ({"real_ratio": 0.0}, "--real-ratio"),
    ({"real_ratio": 1.5}, "--real-ratio"),
    ({"real_ratio": 1.0, "conservative_states": "model"}, "--real-ratio"),
])
def test_bad_settings_are_one_sentence(changes, flag):
    with pytest.raises(ConfigError, match=flag) as error:
        combo.Config(**changes)
    assert str(error.value).count(". ") == 0 and str(error.value).endswith(".")


def test_negative_cql_weight_exits_2_through_the_cli_and_writes_nothing(tmp_path, capsys):
    dataset = write_npz(pendulum_shaped_dataset(episodes=2), tmp_path / "data.npz")
    code = main(["train", "combo", "--dataset", str(dataset), "--run-dir", str(tmp_path / "run"), "--cql-weight", "-1"])
    lines = [line for line in capsys.readouterr().err.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "--cql-weight is -1.0" in lines[0], lines
    assert not (tmp_path / "run").exists()
