"""Model-based offline RL: the dynamics ensemble (offrl/models/), the engine's model rollouts
(offrl/train/model_rollouts.py), `offrl models train`, and MOPO's learning test."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from offrl.cli import main
from offrl.data.collect import collect_episodes
from offrl.data.d4rl_io import write_npz
from offrl.data.transforms import fit_normalizer
from offrl.errors import ConfigError
from offrl.models.buffer import ROLLOUT_STATISTICS, empty_model_buffer
from offrl.models.training import DynamicsConfig, train_dynamics
from offrl.train import model_rollouts
from offrl.train.model_rollouts import dataset_dynamics, rollout
from reliability_helpers import pendulum_shaped_dataset
from scripted import mixed_quality

SMALL_ENSEMBLE = DynamicsConfig(num_models=5, num_elites=3, hidden_dims=(64, 64), weight_decay=(2.5e-5, 5e-5, 1e-4),
                                max_epochs=40, batch_size=64)


@pytest.fixture(scope="module")
def pendulum_transitions():
    """12 Pendulum-v1 episodes (2,400 transitions), 80% uniform random actions."""
    return collect_episodes("Pendulum-v1", mixed_quality(0.8), num_episodes=12, seed=3, name="pendulum-model-v0")


@pytest.fixture(scope="module")
def trained(pendulum_transitions):
    data = pendulum_transitions
    actions = fit_normalizer(data, False, False).scale_actions(data.actions)
    return train_dynamics(data.observations, actions, data.rewards, data.next_observations, SMALL_ENSEMBLE), actions


def held_out_errors(trained, data, actions):
    """Per-member MSE of the predicted mean on the held-out rows, and predicting 'no change' there."""
    result, rows = trained, trained.holdout_rows
    mean, _ = result.model.predict(jnp.asarray(data.observations[rows]), jnp.asarray(actions[rows]))
    targets = np.concatenate([data.next_observations[rows], data.rewards[rows, None]], 1)
    member_mse = ((np.asarray(mean) - targets) ** 2).mean(axis=(1, 2))
    no_change = np.concatenate([data.next_observations[rows] - data.observations[rows], data.rewards[rows, None]], 1)
    return member_mse, float((no_change ** 2).mean())


def test_held_out_error_beats_predicting_no_change_by_a_clear_factor(trained, pendulum_transitions):
    result, actions = trained
    member_mse, no_change = held_out_errors(result, pendulum_transitions, actions)
    elite_mse = member_mse[np.asarray(result.model.elites)].mean()
    assert result.num_holdout == 480 and len(set(result.holdout_rows)) == 480
    assert elite_mse * 10 < no_change, f"elites' held-out MSE {elite_mse:.4f} vs no change {no_change:.4f}"


def test_elites_are_the_best_held_out_members(trained, pendulum_transitions):
    result, actions = trained
    member_mse, _ = held_out_errors(result, pendulum_transitions, actions)
    np.testing.assert_allclose(member_mse, result.holdout_mse, rtol=1e-3)
    assert sorted(np.asarray(result.model.elites).tolist()) == sorted(np.argsort(member_mse)[:3].tolist())
    assert member_mse[np.asarray(result.model.elites)].max() <= np.delete(member_mse, np.asarray(result.model.elites)).min()


def test_uncertainty_is_larger_on_out_of_distribution_actions(trained, pendulum_transitions):
    """The elites' disagreement (std over members of the predicted mean) at the dataset's actions
    (in [-1, 1]) and at actions far outside the data. Measured (seed 3 data, 40 epochs): 0.040 at
    the data's actions, 0.17 at +-2, 0.56 at +-4. MOPO's own penalty, the largest predicted
    (aleatoric) std, did not grow there (0.92, 0.90, 0.84): it is what run_mopo.py uses, and
    docs/model-based.md says so."""
    result, actions = trained
    model = result.model
    observations = jnp.asarray(pendulum_transitions.observations[:500])

    def disagreement(chosen):
        mean, _ = model.predict(observations, jnp.asarray(chosen, jnp.float32))
        return float(mean[model.elites].std(axis=0).mean())

    in_data = disagreement(actions[:500])
    outside = disagreement(np.where(actions[:500] >= 0, 4.0, -4.0))
    assert outside > 4 * in_data, (in_data, outside)


def test_mopo_penalties_are_the_elites_largest_std_or_disagreement(trained, pendulum_transitions):
    """The two penalties of the MOPO code, by hand from the members' predictions: "aleatoric", the
    largest elite std norm over next state and reward; "disagreement", the largest distance of an
    elite's next-state mean from the elites' average. Only the second grows off the data here."""
    result, actions = trained
    model = result.model
    observations = jnp.asarray(pendulum_transitions.observations[:200])
    elites = np.asarray(model.elites)

    def penalties(chosen):
        mean, std = model.predict(observations, jnp.asarray(chosen, jnp.float32))
        means, stds = np.asarray(mean)[elites, :, :-1], np.asarray(std)[elites]
        by_hand = (np.linalg.norm(stds, axis=-1).max(0), np.linalg.norm(means - means.mean(0), axis=-1).max(0))
        computed = [np.asarray(model_rollouts.model_uncertainty(model, mean, std, kind)) for kind in ("aleatoric", "disagreement")]
        for value, expected in zip(computed, by_hand):
            np.testing.assert_allclose(value, expected, rtol=1e-4, atol=1e-6)
        return [float(value.mean()) for value in computed]

    (aleatoric_in, disagreement_in), (aleatoric_out, disagreement_out) = penalties(actions[:200]), penalties(
        np.where(actions[:200] >= 0, 4.0, -4.0))
    assert disagreement_out > 4 * disagreement_in and aleatoric_out < 2 * aleatoric_in


def test_rollouts_never_cross_a_predicted_terminal(trained, pendulum_transitions):
    """A termination box the model's rollouts leave often: a row never starts from a terminal
    observation, a terminal row's next observation is outside the box and a non-terminal one inside."""
    result, _ = trained
    high = 0.3  # terminal when cos(theta) > 0.3 (observation 0)
    starts = pendulum_transitions.observations[pendulum_transitions.observations[:, 0] < 0.2]
    dim = starts.shape[1]
    data = {"observations": jnp.asarray(starts), "model_rollouts": {
        "dynamics": result.model, "termination_low": jnp.full(dim, -jnp.inf), "termination_high": jnp.array([high, jnp.inf, jnp.inf]),
        "observation_mean": jnp.zeros(dim), "observation_std": jnp.ones(dim), "reward_scale": jnp.float32(1.0),
                                "reward_bias": jnp.float32(0.0)}}

    def act(state, observations, key, deterministic):  # a random policy
        return jax.random.uniform(key, (observations.shape[0], 1), minval=-1.0, maxval=1.0)

    horizon, count = 10, 200
    buffer = rollout(act, None, empty_model_buffer(dim, 1, horizon * count), data, jax.random.PRNGKey(0), horizon, count, 1.0)
    size = int(buffer.size)
    observations, next_observations = np.asarray(buffer.observations[:size]), np.asarray(buffer.next_observations[:size])
    dones = np.asarray(buffer.dones[:size]).astype(bool)
    statistics = dict(zip(ROLLOUT_STATISTICS, np.asarray(buffer.statistics)))
    assert 0 < dones.sum() < size and count <= size < horizon * count
    assert (observations[:, 0] <= high).all()  # nothing continues from a terminal state
    assert (next_observations[dones, 0] > high).all() and (next_observations[~dones, 0] <= high).all()
    assert statistics["rollout_length"] == pytest.approx(size / count)
    assert statistics["rollout_terminal_fraction"] == pytest.approx(dones.mean(), abs=1e-6)
    assert statistics["rollout_penalty"] == pytest.approx(statistics["rollout_uncertainty"])  # coefficient 1


TINY = DynamicsConfig(num_models=2, num_elites=1, hidden_dims=(8,), weight_decay=(0.0, 0.0), max_epochs=1)


def test_the_cached_model_is_reused_and_refused_for_another_dataset(tmp_path, monkeypatch):
    dataset = pendulum_shaped_dataset(episodes=2)
    normalizer = fit_normalizer(dataset, False, False)
    first, meta, reused = dataset_dynamics(dataset, normalizer, TINY, cache_dir=tmp_path)
    assert not reused

    def no_training(*args, **kwargs):
        raise AssertionError("the cached model should have been reused")

    monkeypatch.setattr(model_rollouts, "train_dynamics", no_training)
    again, again_meta, reused = dataset_dynamics(dataset, normalizer, TINY, cache_dir=tmp_path)
    assert reused and again_meta["directory"] == meta["directory"]
    jax.tree.map(np.testing.assert_array_equal, again.params, first.params)
    with pytest.raises(AssertionError):  # another config is another cache entry
        dataset_dynamics(dataset, normalizer, DynamicsConfig(**{**vars(TINY), "seed": 1}), cache_dir=tmp_path)
    other = pendulum_shaped_dataset(seed=1, episodes=2)
    with pytest.raises(ConfigError, match="trained on another dataset"):
        dataset_dynamics(other, normalizer, TINY, model_path=meta["directory"])


def run_cli(capsys, *argv):
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_sentence_error(code, err, needle):
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("offrl: error:") and needle in lines[0], err


TINY_FLAGS = ["--num-models", "2", "--num-elites", "1", "--hidden-dims", "8", "--weight-decay", "0", "0", "--max-epochs", "1"]
MOPO_FLAGS = ["--steps", "20", "--log-every", "10", "--eval-every", "20", "--eval-episodes", "1", "--hidden-dims", "16", "16",
              "--batch-size", "32", "--no-progress", "--horizon", "2", "--rollout-batch", "16", "--rollout-every", "10",
              "--model-buffer-capacity", "64", "--dynamics-num-models", "2", "--dynamics-num-elites", "1",
              "--dynamics-hidden-dims", "8", "--dynamics-weight-decay", "0", "0", "--dynamics-max-epochs", "1"]


def test_models_train_command_caches_and_mopo_reuses_or_refuses(tmp_path, capsys):
    first = write_npz(pendulum_shaped_dataset(episodes=2), tmp_path / "first.npz")
    second = write_npz(pendulum_shaped_dataset(seed=1, episodes=2), tmp_path / "second.npz")
    code, out, err = run_cli(capsys, "models", "train", "--dataset", first, *TINY_FLAGS)
    assert code == 0 and "trained dynamics model" in out, err
    directory = out.split("model directory: ")[1].strip()
    code, out, _ = run_cli(capsys, "models", "train", "--dataset", first, *TINY_FLAGS)
    assert code == 0 and "reused cached" in out and directory in out

    code, out, err = run_cli(capsys, "train", "mopo", "--dataset", first, "--run-dir", tmp_path / "run", *MOPO_FLAGS,
                             "--model-path", directory)
    assert code == 0, err
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(record[name]) for record in metrics for name in ROLLOUT_STATISTICS)
    assert metrics[-1]["model_buffer_size"] == 64 and metrics[-1]["rollout_length"] == 2

    code, _, err = run_cli(capsys, "train", "mopo", "--dataset", second, "--run-dir", tmp_path / "other", *MOPO_FLAGS,
                           "--model-path", directory)
    one_sentence_error(code, err, "trained on another dataset")
    assert not (tmp_path / "other").exists()


def test_bad_model_based_input_is_one_sentence_and_writes_nothing(tmp_path, capsys):
    tiny = pendulum_shaped_dataset(episodes=1)
    tiny = tiny.replace(**{name: getattr(tiny, name)[:4] for name in
                           ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")})
    tiny_file = write_npz(tiny, tmp_path / "tiny.npz")
    code, _, err = run_cli(capsys, "models", "train", "--dataset", tiny_file, *TINY_FLAGS)
    one_sentence_error(code, err, "too few to hold out")
    assert not model_rollouts.models_dir().exists() or not any(model_rollouts.models_dir().iterdir())

    shaped = pendulum_shaped_dataset(episodes=2)
    no_env = write_npz(shaped.replace(metadata=type(shaped.metadata)(**{**vars(shaped.metadata), "env_id": None})),
                       tmp_path / "no_env.npz")
    code, _, err = run_cli(capsys, "train", "mopo", "--dataset", no_env, "--run-dir", tmp_path / "a", *MOPO_FLAGS)
    one_sentence_error(code, err, "no termination function")
    dataset = write_npz(shaped, tmp_path / "shaped.npz")
    code, _, err = run_cli(capsys, "train", "mopo", "--dataset", dataset, "--run-dir", tmp_path / "b", *MOPO_FLAGS,
                           "--rollout-batch", "100")
    one_sentence_error(code, err, "overflow the model buffer")
    code, _, err = run_cli(capsys, "train", "mopo", "--dataset", dataset, "--run-dir", tmp_path / "c", *MOPO_FLAGS,
                           "--uncertainty", "epistemic")
    one_sentence_error(code, err, "--uncertainty is 'epistemic'")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
