"""Defaults and mechanics that follow the reference code each algorithm cites (issue 15, section 2):
update order, learning rates, network layout and initialisation, backups, rankings, env models."""

from __future__ import annotations

from functools import partial

import jax
import numpy as np
import pytest

from offrl.algos import calql, cql, edac, percent_bc, rebrac, sac_n
from offrl.data.filtering import episode_scores, filter_top_episodes
from offrl.nets import MLP
from offrl.types import Spec
from offrl.train.initial_state import init_state

from dataset_helpers import make_random_dataset, random_batch as batch_of_random_transitions


random_batch = partial(batch_of_random_transitions, n=32)


def jitted_update(algo):
    return jax.jit(algo.update, static_argnums=2)


def leaves_equal(a, b) -> bool:
    # In NumPy: jnp.array_equal compiles its ops anew for every leaf shape.
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# --- SAC-N / EDAC: temperature -> actor (pre-update critic) -> critic -------------------------


@pytest.mark.parametrize("algo", [sac_n, edac])
def test_ensemble_sac_actor_step_uses_the_critic_before_its_update(algo):
    """The actor's new parameters do not depend on the critic's step size: the actor is trained
    against the critic as it was before this update (CORL sac_n.py / edac.py order)."""
    batch = random_batch()
    updated = []
    for critic_lr in (1e-6, 1.0):
        config = algo.Config(hidden_dims=(16, 16), num_critics=3, critic_learning_rate=critic_lr)
        state = init_state(algo, jax.random.PRNGKey(0), Spec(4, 2), config)
        updated.append(jitted_update(algo)(state, batch, config)[0])
    assert not leaves_equal(updated[0].critic.params, updated[1].critic.params)
    assert leaves_equal(updated[0].actor.params, updated[1].actor.params)


@pytest.mark.parametrize("algo", [sac_n])  # EDAC shares sac_n.ensemble_sac_update
def test_ensemble_sac_updates_temperature_first_and_critic_last(algo):
    """The actor loss uses the temperature after this step's update, and the critic's target uses
    the actor after this step's update."""
    batch = random_batch()

    def one_update(**changes):
        config = algo.Config(hidden_dims=(16, 16), num_critics=3, **changes)
        return jitted_update(algo)(init_state(algo, jax.random.PRNGKey(0), Spec(4, 2), config), batch, config)[0]

    slow_alpha, fast_alpha = one_update(temperature_learning_rate=1e-6), one_update(temperature_learning_rate=0.5)
    assert not leaves_equal(slow_alpha.actor.params, fast_alpha.actor.params)
    slow_actor, fast_actor = one_update(actor_learning_rate=1e-6), one_update(actor_learning_rate=0.5)
    assert not leaves_equal(slow_actor.critic.params, fast_actor.critic.params)


# --- CQL / Cal-QL: the temperature learns at the actor's rate ------------------------------------


@pytest.mark.parametrize("algo", [cql, calql])
def test_temperature_learning_rate_follows_the_actor(algo):
    """Adam's first step moves log(alpha) by (about) its learning rate: the actor's, as in CORL
    cql.py and Cal-QL's conservative_sac.py (alpha optimiser built with policy_lr)."""
    assert algo.Config().temperature_learning_rate is None
    config = algo.Config(hidden_dims=(16, 16), num_sampled_actions=2, actor_learning_rate=1e-2,
                         critic_learning_rate=3e-4)
    state = init_state(algo, jax.random.PRNGKey(0), Spec(4, 2), config)
    new_state, _ = jitted_update(algo)(state, random_batch(mc_returns=algo is calql), config)
    step = jax.tree.leaves(new_state.temperature.params)[0] - jax.tree.leaves(state.temperature.params)[0]
    np.testing.assert_allclose(np.abs(np.asarray(step)), 1e-2, rtol=1e-3)
    explicit = algo.Config(hidden_dims=(16, 16), num_sampled_actions=2, temperature_learning_rate=1e-3)
    state = init_state(algo, jax.random.PRNGKey(0), Spec(4, 2), explicit)
    new_state, _ = jitted_update(algo)(state, random_batch(mc_returns=algo is calql), explicit)
    step = jax.tree.leaves(new_state.temperature.params)[0] - jax.tree.leaves(state.temperature.params)[0]
    np.testing.assert_allclose(np.abs(np.asarray(step)), 1e-3, rtol=1e-3)


# --- Cal-QL: single-sample (CORL) or max-over-samples (authors) backup ---------------------------


def test_calql_max_target_backup_takes_the_best_of_the_sampled_next_actions():
    n, batch_size = 4, 8
    single, best = calql.Config(hidden_dims=(16, 16), num_sampled_actions=n), calql.Config(
        hidden_dims=(16, 16), num_sampled_actions=n, max_target_backup=True)
    assert not calql.Config().max_target_backup  # CORL cal_ql.py's single-sample backup by default
    state = init_state(calql, jax.random.PRNGKey(0), Spec(4, 2), single)
    batch = random_batch(n=batch_size, mc_returns=True)
    next_actions = jax.random.uniform(jax.random.PRNGKey(1), (n * batch_size, 2), minval=-1.0, maxval=1.0)
    # Brute force: min over the two target critics for each sample, per state.
    q = jax.jit(lambda state, actions: state.critic.apply_fn(state.critic_target, batch.next_observations, actions).min(axis=0))
    per_sample = np.stack([np.asarray(q(state, next_actions[j * batch_size:(j + 1) * batch_size])) for j in range(n)])
    backup_value = jax.jit(calql.backup_value, static_argnums=3)
    np.testing.assert_allclose(backup_value(state, batch.next_observations, next_actions, single), per_sample[0], rtol=1e-5)
    np.testing.assert_allclose(backup_value(state, batch.next_observations, next_actions, best), per_sample.max(axis=0), rtol=1e-5)
    assert np.all(per_sample.max(axis=0) > per_sample[0] - 1e-6) and np.any(per_sample.max(axis=0) > per_sample[0])
    # The option reaches the update: the critic steps towards a different target.
    after_single = jitted_update(calql)(state, batch, single)[0]
    after_best = jitted_update(calql)(state, batch, best)[0]
    assert not leaves_equal(after_single.critic.params, after_best.critic.params)


# --- %BC: ranking ---------------------------------------------------------------------------------


def test_percent_bc_ranks_by_undiscounted_return_unless_told_otherwise():
    """Episode A: a large reward late; episode B: a smaller one early. Undiscounted (DT paper),
    A is better; discounted by 0.99 from the start (CORL any_percent_bc.py), B is."""
    dataset = make_random_dataset([200, 200], ends=["timeout", "timeout"], seed=0)
    dataset.rewards[:] = 0.0
    dataset.rewards[199] = 10.0  # A: 10 at step 199
    dataset.rewards[200] = 5.0  # B: 5 at step 0
    np.testing.assert_allclose(episode_scores(dataset, 0.99), [10.0 * 0.99**199, 5.0])
    assert percent_bc.Config().ranking_discount == 1.0
    undiscounted = filter_top_episodes(dataset, 0.5)
    discounted = filter_top_episodes(dataset, 0.5, discount=0.99)
    assert undiscounted.rewards.sum() == 10.0 and discounted.rewards.sum() == 5.0
    assert discounted.metadata.provenance["filter"]["ranking_discount"] == 0.99


# --- MLP: LayerNorm position; ReBRAC's reference layout and initialisation ----------------------


def _layer_norm(x):
    mean = x.mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(x.var(axis=-1, keepdims=True) + 1e-6)


@pytest.mark.parametrize("position", ["pre_activation", "post_activation"])
def test_mlp_layer_norm_position(position):
    x = jax.random.normal(jax.random.PRNGKey(0), (5, 3))
    mlp = MLP((8,), layer_norm=True, layer_norm_position=position)
    params = jax.jit(mlp.init)(jax.random.PRNGKey(1), x)  # one compiled call: eager init compiles op by op
    dense = params["params"]["Dense_0"]
    h = np.asarray(x) @ np.asarray(dense["kernel"]) + np.asarray(dense["bias"])
    expected = np.maximum(_layer_norm(h), 0.0) if position == "pre_activation" else _layer_norm(np.maximum(h, 0.0))
    np.testing.assert_allclose(jax.jit(mlp.apply)(params, x), expected, rtol=1e-4, atol=1e-5)


def test_mlp_default_keeps_layer_norm_before_the_activation():
    """RLPD's critics (and any MLP that does not choose) keep Dense -> LayerNorm -> activation."""
    x = jax.random.normal(jax.random.PRNGKey(0), (5, 3))
    default, pre = MLP((8,), layer_norm=True), MLP((8,), layer_norm=True, layer_norm_position="pre_activation")
    params = jax.jit(default.init)(jax.random.PRNGKey(1), x)
    np.testing.assert_array_equal(jax.jit(default.apply)(params, x), jax.jit(pre.apply)(params, x))


def test_rebrac_networks_follow_the_reference_layout_and_initialisation():
    """tinkoff-ai/ReBRAC src/networks.py: Dense -> ReLU -> LayerNorm per hidden layer (critic),
    PyTorch-default kernels, biases 0.1, output layers U(+-3e-3) (critic) and U(+-1e-3) (actor)."""
    config = rebrac.Config(hidden_dims=(32, 32, 32))
    state = init_state(rebrac, jax.random.PRNGKey(0), Spec(5, 3), config)
    critic = state.critic.params["params"]["Vmap_QNetwork_0"]["MLP_0"]
    actor = state.actor.params["params"]["MLP_0"]
    for net, fan_ins, bound in ((critic, (8, 32, 32), 3e-3), (actor, (5, 32, 32), 1e-3)):
        for i, fan_in in enumerate(fan_ins):
            np.testing.assert_allclose(net[f"Dense_{i}"]["bias"], 0.1)
            kernel = np.asarray(net[f"Dense_{i}"]["kernel"])
            assert np.abs(kernel).max() <= 1 / np.sqrt(fan_in) and np.abs(kernel).max() > 0.8 / np.sqrt(fan_in)
        for name in ("kernel", "bias"):
            values = np.abs(np.asarray(net["Dense_3"][name]))
            assert values.max() <= bound and values.max() > bound / 10
    assert "LayerNorm_0" not in actor  # no LayerNorm in the actor for gym (reference actor_ln False)

    # The critic's forward pass, by hand, with LayerNorm after the ReLU.
    observations = jax.random.normal(jax.random.PRNGKey(1), (6, 5))
    actions = jax.random.uniform(jax.random.PRNGKey(2), (6, 3), minval=-1.0, maxval=1.0)
    member = jax.tree.map(lambda leaf: np.asarray(leaf[0]), critic)
    h = np.concatenate([observations, actions], axis=-1)
    for i in range(3):
        h = np.maximum(h @ member[f"Dense_{i}"]["kernel"] + member[f"Dense_{i}"]["bias"], 0.0)
        h = _layer_norm(h) * member[f"LayerNorm_{i}"]["scale"] + member[f"LayerNorm_{i}"]["bias"]
    q = (h @ member["Dense_3"]["kernel"] + member["Dense_3"]["bias"])[:, 0]
    np.testing.assert_allclose(jax.jit(state.critic.apply_fn)(state.critic.params, observations, actions)[0], q, rtol=1e-4, atol=1e-6)


# --- SPOT: the authors' locomotion defaults; VAE pretraining apart from --steps ------------------


def test_spot_defaults_are_the_authors_locomotion_settings():
    from offrl.algos import spot

    config = spot.Config()
    assert config.actor_learning_rate == config.critic_learning_rate == 3e-4  # thuml/SPOT main.py --lr
    assert config.normalize_observations and not config.normalize_rewards
    assert config.actor_dropout == 0.1 and config.vae_steps == 100_000 and spot.pretraining_steps(config) == 100_000


def test_spot_actor_uses_dropout_in_training_but_not_when_acting():
    from offrl.algos import spot

    config = spot.Config(hidden_dims=(32, 32), vae_hidden_dims=(16, 16), actor_dropout=0.5)
    state = init_state(spot, jax.random.PRNGKey(0), Spec(4, 2), config)
    observations = jax.random.normal(jax.random.PRNGKey(1), (8, 4))
    # Compiled calls: eagerly every op compiles on its own.
    act, apply = jax.jit(spot.act), jax.jit(state.actor.apply_fn, static_argnums=2)
    acting = [act(state, observations, jax.random.PRNGKey(k)) for k in (2, 3)]
    np.testing.assert_array_equal(acting[0], acting[1])
    np.testing.assert_array_equal(acting[0], apply(state.actor.params, observations))
    training = [apply(state.actor.params, observations, True, rngs={"dropout": jax.random.PRNGKey(k)}) for k in (2, 3)]
    assert not np.allclose(training[0], training[1])


def test_spot_presets_cite_the_authors_configs_for_every_entry():
    import json
    from pathlib import Path

    import offrl.train.presets
    from offrl.algos import spot

    presets = json.loads((Path(offrl.train.presets.__file__).parent / "spot.json").read_text())["presets"]
    assert presets["hopper-medium-v2"]["support_weight"] == 0.1
    assert presets["halfcheetah-medium-v2"]["support_weight"] == 0.05
    fields = set(spot.Config.__dataclass_fields__)
    for name, entry in presets.items():
        assert entry["source"].startswith("thuml/SPOT configs/offline/") and set(entry) - {"source"} <= fields, name


def test_engine_pretrains_spot_apart_from_the_counted_steps(tmp_path):
    """--steps counts TD3 updates; the VAE's updates come first and are reported apart."""
    import json

    from offrl.algos import spot
    from offrl.data.dataset import DatasetMetadata
    from offrl.train.offline import TrainConfig, train_offline

    metadata = DatasetMetadata(name="pendulum-shaped", env_id="Pendulum-v1", ref_min_score=-1200.0, ref_max_score=-150.0,
                               action_low=np.array([-2.0], np.float32), action_high=np.array([2.0], np.float32))
    dataset = make_random_dataset([50, 50], obs_dim=3, action_dim=1, seed=0, metadata=metadata)
    config = spot.Config(hidden_dims=(16, 16), vae_hidden_dims=(16, 16), batch_size=32, vae_steps=6)
    train = TrainConfig(steps=4, log_every=2, eval_every=0, checkpoint_every=0, eval_episodes=1)
    result = train_offline(spot, config, dataset, train, tmp_path / "run", progress=False)
    assert result.summary["steps"] == 4 and result.summary["pretrain_steps"] == 6
    assert int(result.policy.state.step) == 10  # 6 VAE updates, then 4 TD3 updates
    pretraining = [json.loads(line) for line in (tmp_path / "run" / "pretrain_metrics.jsonl").read_text().splitlines()]
    assert [r["pretrain_step"] for r in pretraining] == [2, 4, 6] and all("vae_loss" in r for r in pretraining)
    assert all("actor_loss" not in r for r in pretraining)
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in metrics] == [2, 4] and all(np.isfinite(r["critic_loss"]) for r in metrics)


# --- D4RL locomotion: evaluated on the model the data were recorded on ----------------------------


def test_d4rl_walker2d_is_evaluated_with_the_recorded_right_foot_friction():
    """D4RL's walker2d data come from the v2-v4 model: right foot friction 0.9, left 1.9
    (Walker2d-v5 set both to 1.9). Builds the env the registry maps walker2d to; no download."""
    import mujoco

    from offrl.data.registry import D4RL_ENV_IDS
    from offrl.envs.factory import make_env

    env = make_env(D4RL_ENV_IDS["walker2d"])
    try:
        model = env.unwrapped.model
        friction = {name: float(model.geom_friction[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, name)][0])
                    for name in ("foot_geom", "foot_left_geom")}
    finally:
        env.close()
    assert friction == {"foot_geom": 0.9, "foot_left_geom": 1.9}
