"""AWAC's characteristic pieces, checked against the formulas: the critic of the current policy
(target action sampled from pi at s', min over the twin target critics, no bootstrap past a
terminal) and the actor's clipped exp(A / lambda)-weighted log-likelihood."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from offrl.algos import awac
from offrl.nets.policies import gaussian_log_prob
from offrl.types import Batch, Spec
from offrl.train.initial_state import init_state
from dataset_helpers import random_batch as batch_of_random_transitions

CONFIG = awac.Config(hidden_dims=(32, 32), awac_lambda=0.5, max_weight=20.0)
SPEC = Spec(observation_dim=4, action_dim=2)


random_batch = partial(batch_of_random_transitions, done_rate=0.3)


def nearly_deterministic_state(seed=0):
    """A fresh state whose policy std is e^-20: a sampled action is the (clamped) mean to ~1e-9,
    so the targets can be recomputed without reproducing the random draws. The target critics
    are perturbed, so target and online critics (and the twins) all differ."""
    state = init_state(awac, jax.random.PRNGKey(seed), SPEC, CONFIG)

    @jax.jit  # one compiled call: eagerly every op compiles on its own
    def perturbed(state):
        params = jax.tree.map(lambda x: x, state.actor.params)
        params["params"]["log_std"] = jnp.full((2,), -20.0)
        target = jax.tree.map(lambda x: x * 1.3 + 0.05, state.critic_target)
        return state.replace(actor=state.actor.replace(params=params), critic_target=target)

    return perturbed(state)


def test_advantage_weights_are_clipped_exponentials():
    advantages = jnp.array([-2.0, 0.0, 0.3, 1.0, 5.0])
    weights = awac.advantage_weights(advantages, 0.5, 20.0)
    np.testing.assert_allclose(weights, [np.exp(-4.0), 1.0, np.exp(0.6), np.exp(2.0), 20.0], rtol=1e-6)


def test_critic_regresses_onto_the_current_policy_at_the_next_state():
    """Critic loss = sum over both critics of mean (Q_i(s, a) - y)^2 with
    y = r + gamma (1 - done) min_j Q'_j(s', clip(mu(s'))): the policy's action at s', not the
    data's, the smaller target critic, and no bootstrap after a terminal."""
    state, batch = nearly_deterministic_state(), random_batch()
    critic = state.critic
    q_of = jax.jit(critic.apply_fn)  # compiled: an eager forward pass compiles op by op
    q = q_of(critic.params, batch.observations, batch.actions)

    def critic_loss(target):
        return float(((q - target) ** 2).mean(axis=1).sum())

    mean_next = jnp.clip(jax.jit(state.actor.apply_fn)(state.actor.params, batch.next_observations)[0], -1, 1)
    next_q = q_of(state.critic_target, batch.next_observations, mean_next)
    expected = batch.rewards + CONFIG.discount * (1 - batch.dones) * next_q.min(axis=0)
    _, metrics = jax.jit(lambda s: awac.update(s, batch, CONFIG))(state)
    assert float(metrics["critic_loss"]) == pytest.approx(critic_loss(expected), rel=1e-5)
    # Each plausible mistake gives a different loss, so the check above can tell them apart.
    data_actions = q_of(state.critic_target, batch.next_observations, batch.actions).min(axis=0)
    mistakes = {
        "dataset action at s'": batch.rewards + CONFIG.discount * (1 - batch.dones) * data_actions,
        "max over critics": batch.rewards + CONFIG.discount * (1 - batch.dones) * next_q.max(axis=0),
        "bootstrap through terminals": batch.rewards + CONFIG.discount * next_q.min(axis=0),
        "online critic as target": batch.rewards + CONFIG.discount * (1 - batch.dones) * q_of(
            critic.params, batch.next_observations, mean_next).min(axis=0),
    }
    for name, wrong in mistakes.items():
        assert abs(critic_loss(wrong) - critic_loss(expected)) > 1e-3 * critic_loss(expected), name


def test_actor_maximises_the_advantage_weighted_log_likelihood():
    """Actor loss = -mean(w * log pi(a|s)), w = min(exp((min_i Q_i(s, a) - min_i Q_i(s, a_pi)) / lambda),
    w_max), with the critics after this step's update and a_pi sampled from pi at s."""
    state, batch = nearly_deterministic_state(1), random_batch(seed=1)
    new_state, metrics = jax.jit(lambda s: awac.update(s, batch, CONFIG))(state)

    @jax.jit  # one compiled call: eagerly every op compiles on its own
    def expected_loss_and_advantage(state, new_state):
        critic = new_state.critic
        mean, log_std = state.actor.apply_fn(state.actor.params, batch.observations)
        q_data = critic.apply_fn(critic.params, batch.observations, batch.actions).min(axis=0)
        value = critic.apply_fn(critic.params, batch.observations, jnp.clip(mean, -1, 1)).min(axis=0)
        weights = jnp.minimum(jnp.exp((q_data - value) / CONFIG.awac_lambda), CONFIG.max_weight)
        return -(weights * gaussian_log_prob(mean, log_std, batch.actions)).mean(), (q_data - value).mean()

    expected, advantage = expected_loss_and_advantage(state, new_state)
    assert float(metrics["actor_loss"]) == pytest.approx(float(expected), rel=1e-4)
    assert float(metrics["advantage_mean"]) == pytest.approx(float(advantage), rel=1e-4, abs=1e-5)


def test_weighting_pulls_the_policy_toward_high_advantage_actions():
    """With the critic frozen at Q(s, a) = -(a - 0.5)^2-like preferences (trained first), the actor
    fitted on uniform actions moves its mean toward 0.5; unweighted regression would stay near 0."""
    rng = np.random.default_rng(0)
    n = 256
    observations = jnp.asarray(rng.normal(size=(n, 4)), jnp.float32)
    actions = jnp.asarray(rng.uniform(-1, 1, size=(n, 2)), jnp.float32)
    # A one-step task (every transition terminal): Q(s, a) = r(a), highest at a = (0.5, 0.5).
    rewards = -jnp.sum((actions - 0.5) ** 2, axis=-1)
    batch = Batch(observations, actions, rewards, observations, jnp.ones(n, jnp.float32))
    config = awac.Config(hidden_dims=(32, 32), critic_learning_rate=1e-3, actor_learning_rate=1e-3)
    state = init_state(awac, jax.random.PRNGKey(0), SPEC, config)
    update = jax.jit(lambda s: awac.update(s, batch, config))
    for _ in range(600):
        state, metrics = update(state)
    policy_mean = jax.jit(awac.act, static_argnums=3)(state, observations, jax.random.PRNGKey(0), True)
    assert float(policy_mean.mean()) > 0.2  # the weighted mean of the data is about 0.38 per dimension
    assert float(jnp.abs(actions.mean())) < 0.1
