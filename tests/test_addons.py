"""Engine add-ons for every algorithm (re-weighted sampling, HUBL) and reward labelling (OTR,
SEABO, zero): what each computes, checked against hand computations and statistics, and one clear
sentence with exit 2 for each bad input."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest
from scipy.stats import chisquare, spearmanr

from offrl.algos import get_algorithm
from offrl.cli import build_parser, config_from_args, main
from offrl.data.d4rl_io import write_npz
from offrl.data.dataset import Dataset, DatasetMetadata
from offrl.data.labelling import label_dataset
from offrl.data.load import load_dataset
from offrl.train.fused import sample_batch
from offrl.train.hubl import blend_rewards, blended_config
from offrl.train.offline import TrainConfig, prepare, run_record
from offrl.train.samplers import transition_probabilities

from dataset_helpers import make_random_dataset
from reliability_helpers import pendulum_shaped_dataset

FAST = ["--steps", "20", "--log-every", "10", "--eval-every", "20", "--eval-episodes", "1",
        "--hidden-dims", "16", "16", "--batch-size", "16", "--no-progress"]


def drawn_rows(dataset: Dataset, train: TrainConfig, draws: int = 40_000) -> np.ndarray:
    """Rows the engine's compiled sampler draws from `dataset` under `train`'s sampler."""
    td3bc = get_algorithm("td3bc")
    _, data = prepare(td3bc, td3bc.Config(), dataset, None, train)
    data = {**data, "rewards": jax.numpy.arange(dataset.num_transitions, dtype=jax.numpy.float32)}  # rows as labels
    return np.asarray(sample_batch(data, jax.random.PRNGKey(0), draws).rewards).astype(np.int64)


def episode_counts(dataset: Dataset, rows: np.ndarray) -> np.ndarray:
    return np.bincount(np.searchsorted(dataset.episode_starts, rows, side="right") - 1, minlength=dataset.num_episodes)


def test_weighted_sampler_draws_episodes_in_proportion_to_their_weights(tmp_path):
    """Episode e is drawn with probability w_e / sum(w) (chi-square over 40,000 draws), a
    zero-weight episode never, whatever the episodes' lengths."""
    dataset = make_random_dataset([30, 120, 60, 90, 50], seed=2)
    weights = np.array([1.0, 1.0, 3.0, 0.0, 5.0])
    np.save(tmp_path / "weights.npy", weights)
    train = TrainConfig(sampler="episode-weights", sampler_weights=str(tmp_path / "weights.npy"))
    counts = episode_counts(dataset, drawn_rows(dataset, train))
    assert counts[3] == 0
    expected = weights / weights.sum() * counts.sum()
    keep = weights > 0
    assert chisquare(counts[keep], expected[keep]).pvalue > 1e-3, (counts, expected)
    uniform = episode_counts(dataset, drawn_rows(dataset, TrainConfig()))
    assert chisquare(uniform, dataset.episode_lengths / dataset.num_transitions * uniform.sum()).pvalue > 1e-3


def test_return_weighted_sampler_follows_the_reference_softmax():
    """RW (dw-offline-rl IQL/dataset_utils.py): transitions weigh exp(g_e / T), g_e the min-max
    normalised episode return; the engine's draws match those shares (chi-square)."""
    dataset = make_random_dataset([40, 40, 80, 40], ends=["terminal"] * 4, seed=5)
    rewards = np.repeat([0.0, 0.02, 0.005, 0.01], dataset.episode_lengths)  # returns 0, 0.8, 0.4, 0.4
    dataset = dataset.replace(rewards=rewards.astype(np.float32))
    returns = dataset.episode_returns()
    g = (returns - returns.min()) / (returns.max() - returns.min())
    share = dataset.episode_lengths * np.exp(g / 0.5)
    probabilities = transition_probabilities(dataset, "return-weighted", temperature=0.5)
    np.testing.assert_allclose(np.add.reduceat(probabilities, dataset.episode_starts), share / share.sum(), rtol=1e-9)
    counts = episode_counts(dataset, drawn_rows(dataset, TrainConfig(sampler="return-weighted", sampler_temperature=0.5)))
    assert chisquare(counts, share / share.sum() * counts.sum()).pvalue > 1e-3


@pytest.mark.parametrize("weights,expected", [
    ("1\n-2\n1\n", "the weight of episode 1 is -2.0; expected finite weights >= 0."),
    ("1\nnan\n1\n", "the weight of episode 1 is nan"),
    ("1\n1\n", "has 2 weights; expected one per training episode (3)."),
])
def test_bad_sampler_weights_are_one_sentence_exit_2_and_no_run(tmp_path, capsys, weights, expected):
    source = str(write_npz(pendulum_shaped_dataset(episodes=3), tmp_path / "data.npz"))
    (tmp_path / "weights.txt").write_text(weights)
    run_dir = tmp_path / "run"
    code = main(["train", "td3bc", "--dataset", source, "--sampler", "episode-weights", "--sampler-weights",
                 str(tmp_path / "weights.txt"), "--run-dir", str(run_dir), *FAST])
    error = capsys.readouterr().err.strip()
    assert code == 2 and expected in error and error.count("\n") == 0
    assert not run_dir.exists()


def test_hubl_relabels_a_hand_computed_example():
    """γ = 0.5, λ = 0.5. Episode A (terminal) rewards 1, 2, 3: returns-to-go 2.75, 3.5, 3, so
    h(s') = 3.5, 3, (end); episode B (time limit) rewards 4, 5: h(s') = 5, (unobserved: 0).
    r~ = r + γ λ (1 - done) h(s'): 1.875, 2.75, 3 | 5.25, 5; the discount becomes γ (1 - λ) = 0.25."""
    rewards = np.array([1, 2, 3, 4, 5], np.float32)
    terminals = np.array([0, 0, 1, 0, 0], bool)
    blended = blend_rewards(rewards, terminals.astype(np.float32), np.array([0, 3]), terminals, 0.5, 0.5)
    np.testing.assert_allclose(blended, [1.875, 2.75, 3.0, 5.25, 5.0])
    td3bc = get_algorithm("td3bc")
    assert blended_config(td3bc.Config(discount=0.5), 0.5).discount == 0.25
    assert blended_config(td3bc.Config(discount=0.5), 0.0) == td3bc.Config(discount=0.5)
    # r~ + γ~ V(s') equals r + γ ((1 - λ) V(s') + λ h(s')) for any V: the blended one-step target.
    values = np.array([7.0, -1.0, 0.0, 2.0, 9.0])
    heuristic = np.array([3.5, 3.0, 0.0, 5.0, 0.0])
    not_done = 1.0 - terminals
    np.testing.assert_allclose(blended + 0.25 * not_done * values, rewards + 0.5 * not_done * (0.5 * values + 0.5 * heuristic))


def test_hubl_goes_through_the_engine_and_into_config_json():
    dataset = Dataset(observations=np.arange(15, dtype=np.float32).reshape(5, 3), actions=np.zeros((5, 1)),
                      rewards=np.array([1, 2, 3, 4, 5]), next_observations=np.arange(3, 18, dtype=np.float32).reshape(5, 3),
                      terminals=np.array([0, 0, 1, 0, 0]), timeouts=np.array([0, 0, 0, 0, 1]), episode_starts=np.array([0, 3]),
                      metadata=DatasetMetadata(env_id="Pendulum-v1", action_low=np.array([-2.0]), action_high=np.array([2.0])))
    td3bc = get_algorithm("td3bc")
    normalizer, data = prepare(td3bc, td3bc.Config(discount=0.5), dataset, None, TrainConfig(hubl=0.5))
    np.testing.assert_allclose(np.asarray(data["rewards"]), [1.875, 2.75, 3.0, 5.25, 5.0])
    # The flags reach TrainConfig and config.json's "train" record (no training needed to see it).
    args = build_parser().parse_args(["train", "td3bc", "--dataset", "x", "--hubl", "0.3", "--sampler", "return-weighted"])
    train = config_from_args(TrainConfig, args)
    record = json.loads(json.dumps(run_record(td3bc, td3bc.Config(), dataset, train, "Pendulum-v1", normalizer, None)["train"]))
    assert record["hubl"] == 0.3 and record["sampler"] == "return-weighted" and record["sampler_temperature"] == 0.1


@pytest.mark.parametrize("flags,expected", [
    (["--hubl", "1.0"], "--hubl is 1.0; expected a blending factor λ in [0, 1)."),
    (["--sampler", "best"], "--sampler is 'best'; expected one of uniform, return-weighted"),
])
def test_bad_engine_options_exit_2(tmp_path, capsys, flags, expected):
    source = str(write_npz(pendulum_shaped_dataset(episodes=3), tmp_path / "data.npz"))
    code = main(["train", "td3bc", "--dataset", source, *flags, "--run-dir", str(tmp_path / "run"), *FAST])
    error = capsys.readouterr().err.strip()
    assert code == 2 and expected in error and error.count("\n") == 0
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def labelled(pendulum_references):
    """The two-quality Pendulum data (8 controller episodes among 40) labelled from 3 separate
    controller episodes."""
    from offrl.data.collect import collect_episodes
    from learning_data import two_quality_pendulum
    from scripted import mixed_quality

    data = two_quality_pendulum(pendulum_references)
    demos = collect_episodes("Pendulum-v1", mixed_quality(0.0), num_episodes=3, seed=50)
    return data, {method: label_dataset(data, method, demos, overwrite_rewards=True) for method in ("otr", "seabo")}


def test_otr_and_seabo_labels_rank_like_the_true_rewards(labelled):
    """Spearman with the true rewards, measured with demonstration seeds 50 (tested), 51 and 52:
    OTR per transition 0.49 / 0.45 / 0.45, per episode return 0.985 / 0.986 / 0.994; SEABO per
    transition 0.58 / 0.54 / 0.57, per episode 0.86 / 0.71 / 0.92. Bounds: 0.3 per transition, 0.5
    per episode (random labels: about 0)."""
    data, labels = labelled
    for method, dataset in labels.items():
        assert spearmanr(dataset.rewards, data.rewards).statistic > 0.3, method
        assert spearmanr(dataset.episode_returns(), data.episode_returns()).statistic > 0.5, method
        record = dataset.metadata.provenance["labelling"]
        assert record["method"] == method and record["demonstration_episodes"] == 3
        assert len(record["demonstrations_fingerprint"]["sha256"]) == 64 and record["settings"]
        for field in ("observations", "actions", "next_observations", "terminals", "timeouts", "episode_starts"):
            assert np.array_equal(getattr(dataset, field), getattr(data, field))


def test_label_cli_zero_baseline_and_bad_input(tmp_path, capsys):
    data = make_random_dataset([60, 40], ends=["terminal", "timeout"], obs_dim=3, seed=1)
    source = str(write_npz(data, tmp_path / "data.npz"))
    other = str(write_npz(make_random_dataset([30], ends=["terminal"], obs_dim=5, seed=2), tmp_path / "other.npz"))
    out = tmp_path / "labelled.npz"
    assert main(["datasets", "label", source, "--method", "zero", "--out", str(out)]) == 2
    assert "already has rewards (not all zero); expected --overwrite-rewards" in capsys.readouterr().err
    assert not out.exists()
    assert main(["datasets", "label", source, "--method", "zero", "--overwrite-rewards", "--out", str(out)]) == 0
    assert np.all(load_dataset(out).rewards == 0)
    capsys.readouterr()
    target = tmp_path / "seabo.npz"
    assert main(["datasets", "label", str(out), "--method", "seabo", "--expert", other, "--out", str(target)]) == 2
    error = capsys.readouterr().err.strip()
    assert "5-dimensional observations" in error and "expected demonstrations from the same observation space" in error
    assert error.count("\n") == 0 and not target.exists()
    assert main(["datasets", "label", str(out), "--method", "seabo", "--expert", source, "--out", str(target)]) == 0
    assert np.all(load_dataset(target).rewards == 1.0)  # the data are their own demonstrations: distance 0


def test_obs_noise_perturbs_what_the_policy_sees_within_the_radius():
    from offrl.errors import ConfigError
    from offrl.evaluate.perturbation import NoisyObservations

    seen = []
    observations = np.zeros((4000, 3), np.float32)
    noisy = NoisyObservations(lambda obs: seen.append(obs) or np.zeros((len(obs), 1)), 0.2, seed=1)
    noisy(observations)
    assert np.all(np.abs(seen[0]) <= 0.2) and np.abs(seen[0]).max() > 0.19 and abs(float(seen[0].mean())) < 0.01
    again = []
    NoisyObservations(lambda obs: again.append(obs) or obs, 0.2, seed=1)(observations)
    np.testing.assert_array_equal(seen[0], again[0])  # seeded
    with pytest.raises(ConfigError, match="--obs-noise is -0.1"):
        NoisyObservations(lambda obs: obs, -0.1)
