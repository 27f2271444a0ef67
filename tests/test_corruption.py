"""`offrl datasets corrupt` (RIQL's protocol): exactly the stated fraction and scale, reproducible
by seed, every other field untouched, provenance that says what changed; bad input exits 2."""

from __future__ import annotations

import numpy as np
import pytest

from offrl.cli import main
from offrl.data.corruption import RANDOM_REWARD_RANGE, corrupt_dataset, decode_rows
from offrl.data.d4rl_io import write_npz
from offrl.data.load import load_dataset

from dataset_helpers import assert_same_arrays, make_random_dataset

FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts", "episode_starts")


@pytest.fixture(scope="module")
def dataset():
    return make_random_dataset([150, 90, 160, 100], obs_dim=4, action_dim=2, seed=3)  # 500 transitions


def changed_rows(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.any((before != after).reshape(len(before), -1), axis=1))


@pytest.mark.parametrize("target,field", [("observations", "observations"), ("actions", "actions"),
                                          ("dynamics", "next_observations"), ("rewards", "rewards")])
@pytest.mark.parametrize("rate", [0.1, 0.3, 1.0])
def test_exactly_the_stated_fraction_changes_and_nothing_else(dataset, target, field, rate):
    corrupted = corrupt_dataset(dataset, target, "random", rate, scale=0.5, seed=7)
    record = corrupted.metadata.provenance["corruption"]
    rows = decode_rows(record, dataset.num_transitions)
    assert len(rows) == record["num_rows"] == round(rate * dataset.num_transitions)
    before, after = getattr(dataset, field), getattr(corrupted, field)
    if target == "actions":  # noise that the bounds clip to the same value may leave a row unchanged
        assert set(changed_rows(before, after)) <= set(rows) and len(changed_rows(before, after)) > 0.9 * len(rows)
    else:
        np.testing.assert_array_equal(changed_rows(before, after), rows)
    for other in FIELDS:
        if other != field:
            assert np.array_equal(getattr(corrupted, other), getattr(dataset, other)), f"{other} changed"
            assert getattr(corrupted, other).dtype == getattr(dataset, other).dtype
    assert record["target"] == target and record["rate"] == rate and record["scale"] == 0.5 and record["seed"] == 7
    assert record["source_fingerprint"]["num_transitions"] == dataset.num_transitions


def test_observation_noise_has_the_stated_scale(dataset):
    """x + U(-scale, scale) * std per dimension: within the bound, and filling it."""
    scale = 0.5
    corrupted = corrupt_dataset(dataset, "observations", "random", 1.0, scale, seed=0)
    noise = (corrupted.observations - dataset.observations) / dataset.observations.std(axis=0)
    assert np.all(np.abs(noise) <= scale + 1e-5)
    assert np.all(np.abs(noise).max(axis=0) > 0.95 * scale)
    assert abs(float(noise.mean())) < 0.05 and abs(float(noise.std()) - scale / np.sqrt(3)) < 0.02  # uniform


def test_reward_corruption_follows_riql(dataset):
    scale = 0.4
    random = corrupt_dataset(dataset, "rewards", "random", 0.5, scale, seed=1)
    rows = decode_rows(random.metadata.provenance["corruption"], dataset.num_transitions)
    assert np.all(np.abs(random.rewards[rows]) <= scale * RANDOM_REWARD_RANGE + 1e-4)
    assert np.abs(random.rewards[rows]).max() > 0.9 * scale * RANDOM_REWARD_RANGE
    adversarial = corrupt_dataset(dataset, "rewards", "adversarial", 0.5, scale, seed=1)
    np.testing.assert_allclose(adversarial.rewards[rows], -scale * dataset.rewards[rows], rtol=1e-6)


def test_reproducible_by_seed(dataset):
    first = corrupt_dataset(dataset, "observations", "random", 0.2, 1.0, seed=5)
    again = corrupt_dataset(dataset, "observations", "random", 0.2, 1.0, seed=5)
    other = corrupt_dataset(dataset, "observations", "random", 0.2, 1.0, seed=6)
    assert_same_arrays(first, again)
    assert not np.array_equal(first.observations, other.observations)
    rows = decode_rows(first.metadata.provenance["corruption"], dataset.num_transitions)
    assert not np.array_equal(rows, decode_rows(other.metadata.provenance["corruption"], dataset.num_transitions))


def test_cli_writes_npz_hdf5_and_a_registered_name_with_provenance(dataset, tmp_path, capsys):
    source = str(write_npz(make_random_dataset([120, 80], ends=["terminal", "timeout"], seed=4), tmp_path / "source.npz"))
    for out in ("corrupt.npz", "corrupt.hdf5"):
        code = main(["datasets", "corrupt", source, "--target", "rewards", "--rate", "0.25", "--scale", "1",
                     "--seed", "3", "--out", str(tmp_path / out)])
        assert code == 0
        written = load_dataset(tmp_path / out)
        assert int(np.sum(written.rewards != load_dataset(source).rewards)) == 50
    record = load_dataset(tmp_path / "corrupt.npz").metadata.provenance["corruption"]
    assert record["seed"] == 3 and record["num_rows"] == 50 and record["source"] == source
    assert main(["datasets", "corrupt", source, "--target", "observations", "--rate", "0.1", "--name", "noisy",
                 "--data-dir", str(tmp_path / "data")]) == 0
    assert "noisy-v0" in capsys.readouterr().out


@pytest.mark.parametrize("flags,expected", [
    (["--target", "rewards", "--rate", "1.5"], "--rate is 1.5; expected a fraction of the transitions in [0, 1]."),
    (["--target", "rewards", "--rate", "-0.1"], "--rate is -0.1"),
    (["--target", "rewards", "--rate", "nan"], "--rate is nan"),
    (["--target", "rewards", "--scale", "-1"], "--scale is -1.0"),
    (["--target", "observations", "--mode", "adversarial"], "--mode random, or --target rewards"),
])
def test_bad_input_is_one_sentence_exit_2_and_writes_nothing(tmp_path, capsys, flags, expected):
    source = str(write_npz(make_random_dataset([50, 50], seed=1), tmp_path / "source.npz"))
    out = tmp_path / "out.npz"
    assert main(["datasets", "corrupt", source, *flags, "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert expected in error and error.count("\n") == 0
    assert not out.exists()
