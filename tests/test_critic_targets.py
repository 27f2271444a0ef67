"""The critic targets of every algorithm with a critic: terminals and time limits, IQL's V(s')
target and advantage weights, TD3+BC's lambda = alpha / mean|Q|.

The end-flag test goes through the engine's data path (`prepare`): a terminal row must reach the
algorithm with dones = 1 and no bootstrap, a timeout row with dones = 0 and a bootstrap. The
measure is the Bellman error each algorithm reports (`critic_loss`, or `bellman_loss` where the
critic loss also holds a penalty that reads s', as CQL's policy samples at s' do): moving s'
must leave it bit-identical on terminal rows and change it on timeout rows.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.training.train_state import TrainState

from offrl.algos import ALGORITHMS, ONLINE_ALGORITHMS, iql, td3_bc
from offrl.algos.online import sac
from offrl.nets.policies import gaussian_log_prob
from offrl.train.fused import gather_batch
from offrl.train.offline import prepare
from offrl.types import Batch, Spec
from offrl.train.initial_state import init_state

from dataset_helpers import make_random_dataset, random_batch as batch_of_random_transitions
from small_configs import small_config

# Every algorithm the library trains, online ones included (SAC is the fine-tuning engine's
# default learner, not in the `offrl train` registry).
EVERY_ALGORITHM = {**ALGORITHMS, **ONLINE_ALGORITHMS, sac.NAME: sac}
# No critic, so no bootstrap: behaviour cloning (plain and filtered, safe RL's BC-All/BC-Safe too) and the Decision Transformer.
NO_CRITIC = {"bc", "percent_bc", "dt", "bc_all", "bc_safe", "cdt"}
WITH_CRITIC = sorted(set(EVERY_ALGORITHM) - NO_CRITIC)
# SPOT's first `vae_steps` updates fit its VAE only; start at its TD3 phase.
SETTINGS = {"spot": {"vae_steps": 0}}


def test_every_algorithm_is_either_checked_for_bootstrapping_or_has_no_critic():
    assert NO_CRITIC < set(EVERY_ALGORITHM)
    for name in NO_CRITIC:
        algo = EVERY_ALGORITHM[name]
        state = jax.eval_shape(lambda: algo.init(jax.random.PRNGKey(0), Spec(4, 2), algo.Config(hidden_dims=(16, 16))))
        assert not any("critic" in field for field in vars(state)), f"{name} has a critic: add it to the end-flag test"


def _end_rows(name):
    """The engine's arrays for four episodes (terminal, timeout, terminal, timeout) and the rows
    where they end."""
    algo = EVERY_ALGORITHM[name]
    config = small_config(algo, **SETTINGS.get(name, {}))
    dataset = make_random_dataset([6, 5, 7, 6], obs_dim=4, action_dim=2, ends=["terminal", "timeout"] * 2, seed=1)
    # Per-step costs for the safe algorithms (BCQ-Lag's cost critic bootstraps like its reward critic).
    dataset = dataset.replace(costs=np.random.default_rng(1).uniform(0, 1, dataset.num_transitions).astype(np.float32))
    _, data = prepare(algo, config, dataset, None)
    ends = dataset.episode_starts + np.array([6, 5, 7, 6]) - 1
    return algo, config, data, {"terminal": ends[[0, 2]], "timeout": ends[[1, 3]]}


def _bellman_error(update, state, data, rows, shift):
    fields = gather_batch(data, jnp.asarray(np.tile(rows, 16)))
    fields["next_observations"] = fields["next_observations"] + shift
    _, metrics = update(state, Batch(**fields))
    return np.asarray(metrics["bellman_loss" if "bellman_loss" in metrics else "critic_loss"])


@pytest.mark.parametrize("name", WITH_CRITIC)
def test_no_bootstrap_after_a_terminal_and_bootstrap_after_a_timeout(name):
    algo, config, data, rows = _end_rows(name)
    dones = np.asarray(data["dones"])
    assert (dones[rows["terminal"]] == 1).all() and (dones[rows["timeout"]] == 0).all()
    state = init_state(algo, jax.random.PRNGKey(0), Spec(4, 2), config)
    # Target critics differ from the online ones (at init they are equal), so a bootstrap through
    # the target networks is visible however the algorithm builds its target.
    if hasattr(state, "critic_target"):
        state = state.replace(critic_target=jax.tree.map(lambda x: 1.5 * x + 0.1, state.critic_target))
    update = jax.jit(lambda s, b: algo.update(s, b, config))  # one compile: every batch below has one shape
    terminal = [_bellman_error(update, state, data, rows["terminal"], shift) for shift in (0.0, 3.0)]
    np.testing.assert_array_equal(terminal[0], terminal[1], err_msg=f"{name} bootstraps past a terminal")
    timeout = [_bellman_error(update, state, data, rows["timeout"], shift) for shift in (0.0, 3.0)]
    assert abs(float(timeout[0]) - float(timeout[1])) > 1e-3 * (1.0 + abs(float(timeout[0]))), (
        f"{name} ignores s' after a timeout: {timeout}"
    )


# ---- IQL ------------------------------------------------------------------------------------

IQL_CONFIG = iql.Config(hidden_dims=(32, 32), expectile=0.8, temperature=3.0, max_advantage_weight=50.0)


random_batch = partial(batch_of_random_transitions, done_rate=0.3)


def iql_state(seed=0):
    """A fresh IQL state whose target critics differ from the online ones (and the twins differ)."""
    state = init_state(iql, jax.random.PRNGKey(seed), Spec(4, 2), IQL_CONFIG)
    perturb = jax.jit(lambda tree: jax.tree.map(lambda x: 1.3 * x + 0.05, tree))  # one compiled call, not one per leaf
    return state.replace(critic_target=perturb(state.critic_target))


def test_iql_critic_regresses_onto_reward_plus_discounted_value_of_the_next_state():
    """y = r + gamma (1 - done) V(s'), with V the value network after this step's expectile update
    (reference: update_v, then update_q with the new value); the Q-function is never evaluated at s'."""
    state, batch = iql_state(), random_batch()
    new_state, metrics = jax.jit(lambda s: iql.update(s, batch, IQL_CONFIG))(state)
    critic = state.critic
    # Compiled forward passes: eagerly every op compiles on its own.
    q = jax.jit(critic.apply_fn)(critic.params, batch.observations, batch.actions)

    def critic_loss(target):
        return float(((q - target) ** 2).mean(axis=1).sum())

    value_of = jax.jit(state.value.apply_fn)
    value_next = value_of(new_state.value.params, batch.next_observations)
    old_value_next = value_of(state.value.params, batch.next_observations)
    q_next = jax.jit(critic.apply_fn)(state.critic_target, batch.next_observations, batch.actions).min(axis=0)
    gamma, done = IQL_CONFIG.discount, batch.dones
    assert float(metrics["critic_loss"]) == pytest.approx(critic_loss(batch.rewards + gamma * (1 - done) * value_next), rel=1e-5)
    wrong = {
        "value before its update": batch.rewards + gamma * (1 - done) * old_value_next,
        "target Q at s'": batch.rewards + gamma * (1 - done) * q_next,
        "bootstrap through terminals": batch.rewards + gamma * value_next,
    }
    for what, target in wrong.items():
        assert float(metrics["critic_loss"]) != pytest.approx(critic_loss(target), rel=1e-3), what


def test_iql_actor_weights_are_clipped_exponentials_of_target_q_minus_new_value():
    """actor loss = -mean(min(exp(beta (min_i Q'_i(s, a) - V(s))), max) log pi(a|s)), with the
    target critics at the dataset's action and V after this step's update."""
    state, batch = iql_state(), random_batch()
    new_state, metrics = jax.jit(lambda s: iql.update(s, batch, IQL_CONFIG))(state)

    @jax.jit  # one compiled call: eagerly every op compiles on its own
    def expected(state, new_state):
        q_target = state.critic.apply_fn(state.critic_target, batch.observations, batch.actions).min(axis=0)
        v_new = new_state.value.apply_fn(new_state.value.params, batch.observations)
        advantages = q_target - v_new
        weights = jnp.minimum(jnp.exp(IQL_CONFIG.temperature * advantages), IQL_CONFIG.max_advantage_weight)
        mean, log_std = state.actor.apply_fn(state.actor.params, batch.observations)
        log_probs = gaussian_log_prob(mean, log_std, batch.actions)
        # The clip is active on large advantages.
        clipped = jnp.minimum(jnp.exp(IQL_CONFIG.temperature * (advantages + 5.0)), IQL_CONFIG.max_advantage_weight)
        return {"advantage_std": jnp.std(advantages), "actor_loss": -(weights * log_probs).mean(), "weight_mean": weights.mean(),
                "bc_loss": -log_probs.mean(), "clipped_max": clipped.max()}

    reference = {name: float(value) for name, value in expected(state, new_state).items()}
    assert reference["advantage_std"] > 0.05  # the weights below are far from constant
    assert float(metrics["actor_loss"]) == pytest.approx(reference["actor_loss"], rel=1e-5)
    assert float(metrics["advantage_weight_mean"]) == pytest.approx(reference["weight_mean"], rel=1e-5)
    assert float(metrics["actor_loss"]) != pytest.approx(reference["bc_loss"], rel=1e-2)  # not plain BC
    assert reference["clipped_max"] == IQL_CONFIG.max_advantage_weight


def test_iql_weighting_pulls_the_policy_toward_high_advantage_actions():
    """A one-step task (every transition terminal) with uniform data actions and r = -|a - 0.5|^2:
    IQL's policy mean moves toward 0.5; with constant weights (temperature 0) it stays at the
    data's mean, about 0."""
    rng = np.random.default_rng(0)
    n = 256
    observations = jnp.asarray(rng.normal(size=(n, 4)), jnp.float32)
    actions = jnp.asarray(rng.uniform(-1, 1, size=(n, 2)), jnp.float32)
    rewards = -jnp.sum((actions - 0.5) ** 2, axis=-1)
    batch = Batch(observations, actions, rewards, observations, jnp.ones(n, jnp.float32))
    act = jax.jit(iql.act, static_argnums=3)  # one compiled call: eager acting compiles op by op

    def policy_mean(temperature):
        config = iql.Config(hidden_dims=(32, 32), critic_learning_rate=1e-3, value_learning_rate=1e-3,
                            actor_learning_rate=1e-3, temperature=temperature, expectile=0.7)
        state = init_state(iql, jax.random.PRNGKey(0), Spec(4, 2), config)
        update = jax.jit(lambda s: iql.update(s, batch, config))
        for _ in range(600):
            state, _ = update(state)
        return float(act(state, observations, jax.random.PRNGKey(0), True).mean())

    assert policy_mean(10.0) > 0.2
    assert abs(policy_mean(0.0)) < 0.1


# ---- TD3+BC ---------------------------------------------------------------------------------


def test_td3_bc_actor_gradient_scales_q_by_alpha_over_mean_abs_q_at_alpha_2_5():
    """At the paper's alpha = 2.5 the actor's gradient is that of
    -lambda mean Q_1(s, pi(s)) + mean (pi(s) - a)^2 with lambda = alpha / mean|Q_1(s, pi(s))| held
    constant (no gradient through lambda), Q_1 the first critic after this step's critic update.
    The actor's optimiser is plain SGD with rate 1 here, so the parameter change is the gradient."""
    config = td3_bc.Config(hidden_dims=(32, 32), alpha=2.5, policy_freq=1)
    batch = random_batch()
    state = init_state(td3_bc, jax.random.PRNGKey(0), Spec(4, 2), config)
    # Offset the critic so Q is far from zero (lambda far from alpha), and use SGD for the actor.
    critic_params = jax.tree_util.tree_map_with_path(
        lambda path, x: x + 7.0 if path[-1].key == "bias" and x.shape[-1] == 1 else x, state.critic.params
    )  # the output layer's bias
    state = state.replace(
        critic=state.critic.replace(params=critic_params),
        actor=TrainState.create(apply_fn=state.actor.apply_fn, params=state.actor.params, tx=optax.sgd(1.0)),
    )
    new_state, metrics = jax.jit(lambda s: td3_bc.update(s, batch, config))(state)
    critic = new_state.critic  # updated before the actor

    def expected_loss(params, stop_lambda=True):
        actions = state.actor.apply_fn(params, batch.observations)
        q = critic.apply_fn(critic.params, batch.observations, actions)[0]
        scale = config.alpha / jnp.abs(q).mean()
        lmbda = jax.lax.stop_gradient(scale) if stop_lambda else scale
        return -lmbda * q.mean() + ((actions - batch.actions) ** 2).mean()

    # Each computation below as one compiled call: eagerly every op compiles on its own.
    mean_abs_q_pi = jax.jit(lambda params: jnp.abs(
        critic.apply_fn(critic.params, batch.observations, state.actor.apply_fn(params, batch.observations))[0]).mean())
    assert float(mean_abs_q_pi(state.actor.params)) > 3.0  # lambda = 2.5 / mean|Q| is far from 2.5 and from 1
    assert float(metrics["actor_loss"]) == pytest.approx(float(jax.jit(expected_loss)(state.actor.params)), rel=1e-5)
    step = jax.jit(lambda new, old: jax.tree.map(lambda n, o: o - n, new, old))(new_state.actor.params, state.actor.params)
    gradient = jax.jit(jax.grad(expected_loss))(state.actor.params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), step, gradient)
    # The Q term matters at alpha = 2.5 (unlike alpha = 0), and lambda carries no gradient.
    bc_only = jax.jit(jax.grad(lambda p: ((state.actor.apply_fn(p, batch.observations) - batch.actions) ** 2).mean()))(state.actor.params)
    through_lambda = jax.jit(jax.grad(lambda p: expected_loss(p, stop_lambda=False)))(state.actor.params)
    for other in (bc_only, through_lambda):
        difference = max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in zip(jax.tree.leaves(step), jax.tree.leaves(other)))
        assert difference > 1e-3
