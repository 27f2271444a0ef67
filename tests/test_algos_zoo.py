"""The characteristic piece of each zoo algorithm (CQL, ReBRAC, AWAC, SAC-N/EDAC, %BC, SPOT),
checked against its formula or the property it exists for."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from offrl.algos import cql, edac, percent_bc, rebrac, sac_n, spot, td3_bc
from offrl.data.filtering import filter_top_episodes
from offrl.errors import ConfigError
from offrl.nets import ConditionalVAE, CriticEnsemble, member_action_gradients
from offrl.types import Spec
from offrl.train.initial_state import init_state
from dataset_helpers import random_batch


# --- CQL -------------------------------------------------------------------------------------


def test_cql_penalty_is_temperature_logsumexp_minus_data_q():
    rng = np.random.default_rng(0)
    q_sampled, q_data = rng.normal(size=(2, 6, 5)), rng.normal(size=(2, 5))
    expected = (2.0 * np.log(np.exp(q_sampled / 2.0).sum(axis=1)) - q_data).mean(axis=-1)
    np.testing.assert_allclose(cql.conservative_penalty(jnp.asarray(q_sampled), jnp.asarray(q_data), 2.0), expected, rtol=1e-5)


def test_cql_penalty_pushes_down_out_of_distribution_actions():
    """Training on one fixed batch opens a gap: Q on uniform (out-of-distribution) actions ends
    below Q on the data's actions, and the logsumexp gap the penalty minimises shrinks."""
    batch = random_batch(n=64)
    config = cql.Config(hidden_dims=(32, 32), num_sampled_actions=4, critic_learning_rate=1e-3)
    state = init_state(cql, jax.random.PRNGKey(0), Spec(4, 2), config)
    uniform = jax.random.uniform(jax.random.PRNGKey(3), (4, *batch.actions.shape), minval=-1.0, maxval=1.0)

    @jax.jit
    def q_gap(state):
        q_data = state.critic.apply_fn(state.critic.params, batch.observations, batch.actions)
        q_uniform = jax.vmap(lambda a: state.critic.apply_fn(state.critic.params, batch.observations, a))(uniform)
        return (q_data - q_uniform.mean(axis=0)).mean()

    data_minus_uniform_q = lambda state: float(q_gap(state))  # noqa: E731

    update = jax.jit(lambda s: cql.update(s, batch, config))
    initial_gap = data_minus_uniform_q(state)
    state, first = update(state)
    for _ in range(200):
        state, metrics = update(state)
    assert abs(initial_gap) < 0.1
    assert data_minus_uniform_q(state) > initial_gap + 0.25
    assert float(metrics["cql_gap"]) < float(first["cql_gap"])


def test_cql_lagrange_multiplier_grows_when_gap_exceeds_target():
    batch = random_batch()
    config = cql.Config(hidden_dims=(16, 16), num_sampled_actions=2, lagrange=True, target_action_gap=-100.0)
    state = init_state(cql, jax.random.PRNGKey(0), Spec(4, 2), config)
    update = jax.jit(lambda s: cql.update(s, batch, config))
    for _ in range(5):
        state, metrics = update(state)
    assert float(metrics["lagrange_multiplier"]) > 1.0  # gap (> -100) exceeds the target: alpha' rises


# --- ReBRAC ----------------------------------------------------------------------------------


def test_rebrac_critic_target_subtracts_bc_penalty_on_next_actions():
    batch = random_batch()
    next_data_actions = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (64, 2)), jnp.float32)
    key = jax.random.PRNGKey(7)
    plain = rebrac.Config(hidden_dims=(16, 16), critic_bc_coef=0.0)
    penalised = rebrac.Config(hidden_dims=(16, 16), critic_bc_coef=0.5)
    state = init_state(rebrac, jax.random.PRNGKey(0), Spec(4, 2), plain)
    target = lambda state, config: rebrac.bellman_target(state, batch, next_data_actions, key, config)  # noqa: E731
    difference = jax.jit(lambda state: target(state, plain) - target(state, penalised))(state)

    @jax.jit  # one compiled call: eagerly every op compiles on its own
    def smoothed_next_actions(state):
        # The same noise key gives the same smoothed target action a'.
        noise = jnp.clip(jax.random.normal(key, batch.actions.shape) * plain.policy_noise, -plain.noise_clip, plain.noise_clip)
        return jnp.clip(state.actor.apply_fn(state.actor_target, batch.next_observations) + noise, -1.0, 1.0)

    next_actions = smoothed_next_actions(state)
    expected = plain.discount * (1.0 - batch.dones) * 0.5 * ((next_actions - next_data_actions) ** 2).sum(-1)
    np.testing.assert_allclose(difference, expected, rtol=1e-4, atol=1e-5)
    assert float(expected.max()) > 0.1


def test_rebrac_critics_use_layer_norm():
    state = init_state(rebrac, jax.random.PRNGKey(0), Spec(4, 2), rebrac.Config(hidden_dims=(16, 16)))
    names = jax.tree_util.tree_flatten_with_path(state.critic.params)[0]
    assert any("LayerNorm" in jax.tree_util.keystr(path) for path, _ in names)


# --- SAC-N / EDAC ----------------------------------------------------------------------------


def test_member_action_gradients_match_per_critic_jacobians():
    critic = CriticEnsemble((16, 16), num_critics=3)
    batch = random_batch(n=5)
    # Each computation as one compiled call: eagerly every op compiles on its own.
    params = jax.jit(critic.init)(jax.random.PRNGKey(0), batch.observations, batch.actions)
    gradients = jax.jit(member_action_gradients, static_argnums=0)(critic, params, batch.observations, batch.actions)
    per_sample = jax.jit(jax.vmap(jax.jacobian(lambda o, a: critic.apply(params, o[None], a[None])[:, 0], argnums=1)))
    jacobians = per_sample(batch.observations, batch.actions)  # (batch, num_critics, action_dim)
    np.testing.assert_allclose(gradients, jnp.swapaxes(jacobians, 0, 1), rtol=1e-4, atol=1e-6)


def test_edac_diversity_is_maximal_for_identical_critics_and_zero_for_orthogonal_gradients():
    """1/(N-1) sum_{i!=j} cos(g_i, g_j): N when all critics agree, 0 for orthogonal gradients.
    (Identical critics are the *worst* case the term penalises, not a zero of it.)"""
    # Each computation as one compiled call: eagerly every op compiles on its own.
    gradient_diversity = jax.jit(edac.gradient_diversity)
    same = jnp.broadcast_to(jnp.array([[0.3, -1.2]]), (4, 8, 2))
    assert float(gradient_diversity(same)) == pytest.approx(4.0, rel=1e-5)
    orthogonal = jnp.stack([jnp.tile(jnp.array([[1.0, 0.0]]), (8, 1)), jnp.tile(jnp.array([[0.0, 2.0]]), (8, 1))])
    assert float(gradient_diversity(orthogonal)) == pytest.approx(0.0, abs=1e-6)

    critic = CriticEnsemble((16, 16), num_critics=4)
    batch = random_batch()
    params = jax.jit(critic.init)(jax.random.PRNGKey(0), batch.observations, batch.actions)
    clones = jax.jit(lambda params: jax.tree.map(lambda p: jnp.broadcast_to(p[:1], p.shape), params))(params)  # every member = member 0
    diversity = jax.jit(lambda p: edac.gradient_diversity(member_action_gradients(critic, p, batch.observations, batch.actions)))
    assert float(diversity(clones)) == pytest.approx(4.0, rel=1e-4)
    assert float(diversity(params)) < 4.0 - 0.1


def test_edac_diversity_gradient_makes_action_gradients_less_aligned():
    critic = CriticEnsemble((16, 16), num_critics=4)
    batch = random_batch()
    params = jax.jit(critic.init)(jax.random.PRNGKey(0), batch.observations, batch.actions)
    diversity = lambda p: edac.gradient_diversity(member_action_gradients(critic, p, batch.observations, batch.actions))  # noqa: E731
    step = jax.jit(lambda params: jax.tree.map(lambda p, g: p - 0.01 * g, params, jax.grad(diversity)(params)))
    before = float(jax.jit(diversity)(params))
    for _ in range(20):
        params = step(params)
    assert float(diversity(params)) < before - 0.2


def test_edac_diversity_has_no_gradient_when_actions_are_one_dimensional():
    """With one action dimension each unit action-gradient is a sign (+1 or -1), so the diversity
    term is piecewise constant in the critics' parameters: its gradient vanishes and EDAC trains
    exactly like SAC-N. That is why Pendulum-v1 (one torque) cannot test EDAC's mechanism
    (tests/test_learning.py, docs/learning-tests.md); with two dimensions the gradient is large."""
    norms = {}
    for action_dim in (1, 2):
        critic = CriticEnsemble((32, 32), num_critics=5)
        batch = random_batch(obs_dim=3, action_dim=action_dim)
        params = jax.jit(critic.init)(jax.random.PRNGKey(0), batch.observations, batch.actions)
        diversity = lambda p: edac.gradient_diversity(member_action_gradients(critic, p, batch.observations, batch.actions))  # noqa: E731
        gradient_norm = jax.jit(lambda p: jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(jax.grad(diversity)(p)))))
        norms[action_dim] = float(gradient_norm(params))
    assert norms[1] < 1e-3 and norms[2] > 0.1, norms


def test_edac_update_reports_diversity_and_sac_n_does_not():
    batch = random_batch()
    for module, has_term in ((edac, True), (sac_n, False)):
        config = module.Config(hidden_dims=(16, 16), num_critics=3)
        state = init_state(module, jax.random.PRNGKey(0), Spec(4, 2), config)
        _, metrics = jax.jit(lambda s: module.update(s, batch, config))(state)
        assert ("gradient_diversity" in metrics) == has_term
        assert state.critic.params["params"]["Vmap_QNetwork_0"]["MLP_0"]["Dense_0"]["kernel"].shape[0] == 3


# --- %BC -------------------------------------------------------------------------------------


def test_filter_top_episodes_keeps_the_best_whole_episodes(make_dataset, aligned):
    dataset = make_dataset([5, 7, 3, 6, 4, 8, 2, 5, 6, 4], ends=["terminal", "timeout"] * 5)
    returns = dataset.episode_returns()
    filtered = filter_top_episodes(dataset, 0.3)
    assert filtered.num_episodes == 3
    np.testing.assert_allclose(np.sort(filtered.episode_returns()), np.sort(returns)[-3:], rtol=1e-6)
    aligned(filtered)
    filtered.validate()
    assert filtered.metadata.provenance["filter"]["episodes_kept"] == 3
    assert filter_top_episodes(dataset, 0.01).num_episodes == 1  # at least one episode
    with pytest.raises(ConfigError):
        filter_top_episodes(dataset, 0.0)


def test_percent_bc_is_bc_with_a_top_fraction():
    assert percent_bc.Config().top_fraction == 0.1
    assert percent_bc.update is __import__("offrl.algos.model_free.bc", fromlist=["update"]).update


# --- SPOT ------------------------------------------------------------------------------------


def test_spot_vae_elbo_rises_on_data_and_exceeds_far_actions():
    """Behaviour actions a = 0.8 tanh(s_0) (plus noise): training raises their ELBO, and the trained
    VAE gives actions far from the behaviour (the negated ones) a much lower ELBO."""
    rng = np.random.default_rng(0)
    observations = jnp.asarray(rng.normal(size=(256, 3)), jnp.float32)
    actions = 0.8 * jnp.tanh(observations[:, :1] * jnp.array([[1.0, -1.0]])) + 0.02 * jnp.asarray(rng.normal(size=(256, 2)), jnp.float32)
    far_actions = -actions
    vae = ConditionalVAE(action_dim=2, latent_dim=4, hidden_dims=(64, 64))
    params = jax.jit(vae.init)(jax.random.PRNGKey(0), observations, actions, jax.random.PRNGKey(1))
    import optax

    optimiser = optax.adam(1e-3)
    opt_state = jax.jit(optimiser.init)(params)
    loss = jax.jit(lambda p, a, k: vae.apply(p, observations, a, k, 0.5, 8, method=ConditionalVAE.negative_elbo).mean())

    @jax.jit
    def step(params, opt_state, key):
        grads = jax.grad(loss)(params, actions, key)
        updates, opt_state = optimiser.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state

    key = jax.random.PRNGKey(2)
    before = float(loss(params, actions, key))
    for i in range(400):
        params, opt_state = step(params, opt_state, jax.random.fold_in(key, i))
    after_data, after_far = float(loss(params, actions, key)), float(loss(params, far_actions, key))
    assert after_data < 0.5 * before  # ELBO of dataset actions rose
    assert after_far > after_data + 0.1  # and exceeds the ELBO of far-away actions


def test_spot_pretrains_the_vae_then_freezes_it_for_td3():
    batch = random_batch()
    config = spot.Config(hidden_dims=(16, 16), vae_hidden_dims=(16, 16), vae_steps=2, policy_freq=1)
    state = init_state(spot, jax.random.PRNGKey(0), Spec(4, 2), config)
    update = jax.jit(lambda s: spot.update(s, batch, config))
    initial = state
    for _ in range(2):
        state, metrics = update(state)  # VAE phase
    assert np.isfinite(float(metrics["vae_loss"])) and np.isnan(float(metrics["actor_loss"]))
    jax.tree.map(np.testing.assert_array_equal, initial.actor.params, state.actor.params)
    vae_after_pretraining = state.vae.params
    assert not np.allclose(initial.vae.params["params"]["decoder"]["Dense_0"]["kernel"], vae_after_pretraining["params"]["decoder"]["Dense_0"]["kernel"])
    state, metrics = update(state)  # TD3 phase
    assert np.isnan(float(metrics["vae_loss"])) and np.isfinite(float(metrics["actor_loss"]))
    assert np.isfinite(float(metrics["support_penalty"]))
    jax.tree.map(np.testing.assert_array_equal, vae_after_pretraining, state.vae.params)
    assert not np.allclose(initial.actor.params["params"]["MLP_0"]["Dense_0"]["kernel"], state.actor.params["params"]["MLP_0"]["Dense_0"]["kernel"])


def test_next_actions_follow_within_episodes_and_reach_rebrac_batches(make_dataset):
    from offrl.train.extra_fields import offline_extra_arrays
    from offrl.train.fused import sample_batch
    from offrl.train.offline import prepare

    dataset = make_dataset([5, 3, 4], obs_dim=3, action_dim=2)
    config = rebrac.Config(hidden_dims=(16, 16), batch_size=32)
    normalizer, device_data = prepare(rebrac, config, dataset, None)
    scaled = np.asarray(device_data["actions"])
    next_actions = offline_extra_arrays(rebrac, config, dataset, normalizer)["next_actions"]
    ends = {4, 7, 11}  # last row of each episode: no next action in the data, its own is repeated
    for row in range(dataset.num_transitions):
        expected = scaled[row] if row in ends else scaled[row + 1]
        np.testing.assert_array_equal(next_actions[row], expected)
    batch = sample_batch(device_data, jax.random.PRNGKey(0), 32)
    assert batch.next_actions is not None and batch.next_actions.shape == (32, 2)
    # Rows stay together: each sampled row's next action is that row's entry.
    for observation, following in zip(np.asarray(batch.observations), np.asarray(batch.next_actions)):
        row = int(np.flatnonzero((np.asarray(device_data["observations"]) == observation).all(axis=1))[0])
        np.testing.assert_array_equal(following, next_actions[row])
    assert "next_actions" not in prepare(td3_bc, td3_bc.Config(), dataset, None)[1]  # only on request


def test_rebrac_fine_tunes_with_next_actions_in_offline_and_online_rows(tmp_path):
    from offrl.train.finetune import FinetuneConfig, finetune
    from offrl.train.offline import TrainConfig, train_offline
    from reliability_helpers import pendulum_shaped_dataset


    dataset = pendulum_shaped_dataset()
    config = rebrac.Config(hidden_dims=(16, 16), batch_size=32)
    train_offline(rebrac, config, dataset, TrainConfig(steps=100, eval_every=0, log_every=50, eval_episodes=1),
                  tmp_path / "offline", progress=False)
    result = finetune(tmp_path / "offline", FinetuneConfig(online_steps=300, eval_every=0, eval_episodes=1, log_every=100,
                                                          checkpoint_every=0, warmup_steps=0), tmp_path / "online",
                      dataset=dataset, progress=False)
    online = result.buffer
    assert result.offline_data is not None and "next_actions" in result.offline_data
    # Online rows carry their own action as next action (the next one does not exist yet when written).
    np.testing.assert_array_equal(online["next_actions"], online["actions"])
    assert result.summary["online_steps"] == 300
