"""CPQ (offrl/algos/safe/cpq.py): the constraint-penalised reward target and the cost target on a
hand-computed batch, the out-of-distribution term raising the cost critic, and data without costs
refused."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from offrl.algos.safe import cpq
from offrl.cli import main
from offrl.data.d4rl_io import write_npz
from offrl.train.initial_state import init_state
from offrl.types import Batch, Spec
from dataset_helpers import make_random_dataset
from small_configs import small_config

# The generic tests' settings (32 x 32, batches of 64): their compiled init serves these tests too.
SMALL = small_config(cpq)
# T = 1 step makes the per-step limit the target cost itself: 2.
HAND = dataclasses.replace(SMALL, target_cost=2.0, max_episode_steps=1, discount=0.9, reward_scale=0.1)


@pytest.fixture(scope="module")
def initial_state():
    """One initial state for every config below: `init` reads only the network settings they share."""
    return init_state(cpq, jax.random.PRNGKey(0), Spec(4, 2), SMALL)


def known_values(params, observations, actions):
    """A stand-in critic whose values are read off the state: reward networks s[0] and s[0] + 1
    (minimum s[0]), cost networks s[1] and s[1] + 3 (minimum s[1])."""
    first, second = observations[:, 0], observations[:, 1]
    return jnp.stack([first, first + 1.0, second, second + 3.0])


def hand_batch():
    """Row 0 safe at s' (Q'_c 1 <= 2), row 1 unsafe (4 > 2), row 2 terminal, row 3 unsafe after a timeout."""
    observations = jnp.zeros((4, 4)).at[:, 0].set(jnp.array([0.0, 0.5, -1.0, 2.0]))
    next_observations = jnp.zeros((4, 4)).at[:, 0].set(3.0).at[:, 1].set(jnp.array([1.0, 4.0, 1.9, 10.0]))
    return Batch(observations=observations, actions=jnp.zeros((4, 2)), rewards=jnp.array([1.0, 2.0, 3.0, 4.0]),
                 next_observations=next_observations, dones=jnp.array([0.0, 0.0, 1.0, 0.0]),
                 costs=jnp.array([0.0, 1.0, 0.0, 1.0]))


def test_reward_target_bootstraps_only_where_the_cost_critic_deems_s_prime_safe_and_no_target_past_a_terminal(initial_state):
    """y_r = 0.1 r + 0.9 (1 - d) 1[Q'_c(s', a') <= 2] Q'_r(s', a'),  y_c = c + 0.9 (1 - d) Q'_c(s', a'),
    with Q'_r = 3 and Q'_c = 1, 4, 1.9, 10 on the four rows."""
    state = initial_state.replace(critic=initial_state.critic.replace(apply_fn=known_values))
    batch = hand_batch()
    assert cpq.cost_q_limit(HAND) == pytest.approx(2.0)
    reward_target, cost_target = cpq.critic_targets(state, batch, jnp.zeros((4, 2)), HAND)
    np.testing.assert_allclose(reward_target, [0.1 + 0.9 * 3.0, 0.2, 0.3, 0.4], rtol=1e-6)
    np.testing.assert_allclose(cost_target, [0.9 * 1.0, 1.0 + 0.9 * 4.0, 0.0, 1.0 + 0.9 * 10.0], rtol=1e-6)

    # The update regresses each network on these targets (current values: s[0], s[0] + 1 and 0, 3).
    _, metrics = jax.jit(lambda s: cpq.update(s, batch, HAND))(state)
    q = np.array([0.0, 0.5, -1.0, 2.0])

    def summed_errors(values, target):
        return sum(float(np.mean((v - np.asarray(target)) ** 2)) for v in values)

    assert float(metrics["reward_critic_loss"]) == pytest.approx(summed_errors([q, q + 1.0], reward_target), rel=1e-5)
    assert float(metrics["cost_critic_loss"]) == pytest.approx(summed_errors([np.zeros(4), np.full(4, 3.0)], cost_target), rel=1e-5)
    unmasked = [0.1 + 0.9 * 3.0, 0.2 + 2.7, 0.3, 0.4 + 2.7]  # without the cost critic's mask
    assert float(metrics["reward_critic_loss"]) != pytest.approx(summed_errors([q, q + 1.0], unmasked), rel=1e-2)


def test_out_of_distribution_actions_raise_the_cost_critic(initial_state):
    """Data actions all near (0.6, 0.6), zero costs, every row terminal: the Bellman target of Q_c is
    0 at the data. The alpha term raises Q_c at actions far from the data, (-0.8, -0.8), above Q_c
    at the data's actions: after 101 updates 2.58 against -0.001. Alpha rises while the OOD cost Q
    is below qc_scalar * limit. Broken, the term kept off the critic (OSRL's code,
    ood_cost_gradient=False): 0.052 against -0.011, which fails the test."""
    rng = np.random.default_rng(0)
    n = 64
    observations = jnp.asarray(rng.normal(size=(n, 4)), jnp.float32)
    batch = Batch(observations=observations, actions=jnp.asarray(0.6 + 0.05 * rng.normal(size=(n, 2)), jnp.float32),
                  rewards=jnp.asarray(rng.normal(size=n), jnp.float32), next_observations=observations,
                  dones=jnp.ones(n), costs=jnp.zeros(n))

    update = jax.jit(lambda s: cpq.update(s, batch, SMALL))
    state, first = update(initial_state)
    for _ in range(100):
        state, _ = update(state)
    cost_q = jax.jit(lambda s, a: cpq.reward_and_cost_values(s, s.critic.params, observations, a)[1].mean())
    far, data = float(cost_q(state, jnp.full((n, 2), -0.8))), float(cost_q(state, batch.actions))
    assert far > data + 1.0, (far, data)
    # The OOD cost Q starts near 0, below 1.5 * 3.17: alpha rises from its initial 1.
    assert float(first["alpha"]) == 1.0 and float(jnp.exp(state.log_alpha)) > 1.0


def test_data_without_costs_is_refused_in_one_sentence(tmp_path, capsys):
    data = str(write_npz(make_random_dataset([6, 5]), tmp_path / "plain.npz"))
    code = main(["train", "cpq", "--dataset", data, "--run-dir", str(tmp_path / "run"), "--steps", "10", "--no-progress"])
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "has no per-step costs" in lines[0] and "cpq" in lines[0], err
    assert not (tmp_path / "run").exists()
