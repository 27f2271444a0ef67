"""The named-dataset registry: data dir, resolve, list, import, D4RL reference scores, errors."""

from __future__ import annotations

from pathlib import Path

import h5py
import minari
import numpy as np
import pytest

from offrl.data.d4rl_io import write_npz
from offrl.data.dataset import DatasetMetadata
from offrl.suites import make_suite
from offrl.data.registry import (
    D4RL_REFERENCE_SCORES,
    default_data_dir,
    import_dataset,
    list_datasets,
    resolve_dataset,
)
from offrl.errors import ConfigError, DatasetError
from offrl.evaluate.scores import normalized_score


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "offrl_data"
    monkeypatch.setenv("OFFRL_DATA_DIR", str(directory))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(directory / "datasets"))
    return directory


def _npz(tmp_path: Path, make_dataset, name: str, with_refs: bool = True, seed: int = 0) -> Path:
    dataset = make_dataset([5, 7, 4], seed=seed)
    if not with_refs:
        dataset = dataset.replace(metadata=DatasetMetadata(
            action_low=-np.ones(2, np.float32), action_high=np.ones(2, np.float32)))
    return write_npz(dataset, tmp_path / f"{name}.npz")


def test_default_data_dir_order(tmp_path, monkeypatch):
    monkeypatch.delenv("OFFRL_DATA_DIR", raising=False)
    assert default_data_dir() == Path("~/.offrl").expanduser()
    monkeypatch.setenv("OFFRL_DATA_DIR", str(tmp_path / "env"))
    assert default_data_dir() == tmp_path / "env"
    assert default_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"


def test_import_resolve_list_and_latest_version(data_dir, tmp_path, make_dataset, same_arrays):
    source = _npz(tmp_path, make_dataset, "mine")
    path = import_dataset(str(source), "mine")
    assert path == data_dir / "datasets" / "mine-v0"
    original = make_dataset([5, 7, 4], seed=0)
    same_arrays(resolve_dataset("mine"), original)
    same_arrays(resolve_dataset("mine-v0"), original)
    same_arrays(resolve_dataset(str(path)), original)  # a path works too

    import_dataset(str(_npz(tmp_path, make_dataset, "newer", seed=3)), "mine-v1")
    same_arrays(resolve_dataset("mine"), make_dataset([5, 7, 4], seed=3))  # latest version
    same_arrays(resolve_dataset("mine-v0"), original)

    rows = {row["name"]: row for row in list_datasets()}
    assert {"mine-v0", "mine-v1"} <= set(rows)
    row = rows["mine-v0"]
    assert row["transitions"] == 16 and row["episodes"] == 3
    assert row["mean_return"] == pytest.approx(float(np.mean(original.episode_returns())), rel=1e-5)
    assert (row["ref_min_score"], row["ref_max_score"]) == (-12.5, 250.25)
    assert row["path"] == str(path)
    assert minari.load_dataset("mine-v0").total_steps == 16  # Minari itself opens it


def test_cli_list_shows_whole_names_on_a_narrow_terminal(data_dir, tmp_path, make_dataset, capsys, monkeypatch):
    from offrl.cli import main

    monkeypatch.setenv("COLUMNS", "80")
    names = ["walker2d-medium-expert-v0", "halfcheetah-medium-replay-v0"]
    for name in names:
        import_dataset(str(_npz(tmp_path, make_dataset, name)), name)
    assert main(["datasets", "list"]) == 0
    shown = capsys.readouterr().out
    for name in names:
        assert name in shown
    assert "16" in shown and "250.2" in shown  # transitions and ref_max_score, not cut short


def test_import_minari_directory_and_d4rl_hdf5(data_dir, tmp_path, make_dataset, same_arrays):
    first = import_dataset(str(_npz(tmp_path, make_dataset, "a")), "first")
    again = import_dataset(str(first), "copy-v3")  # a Minari directory
    same_arrays(resolve_dataset("copy"), make_dataset([5, 7, 4], seed=0))
    assert again.name == "copy-v3"

    dataset = make_dataset([5, 7], ends=["timeout", "terminal"])
    hdf5 = tmp_path / "file.hdf5"
    with h5py.File(hdf5, "w") as file:
        for name in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
            file[name] = getattr(dataset, name)
    import_dataset(str(hdf5), "fromhdf5")
    loaded = resolve_dataset("fromhdf5")
    np.testing.assert_array_equal(loaded.observations, dataset.observations)
    assert loaded.num_episodes == 2


@pytest.mark.parametrize("name, env", [("hopper-medium-v2", "hopper"), ("halfcheetah-medium-replay", "halfcheetah"),
                                       ("walker2d-expert-v2", "walker2d"), ("ant-medium-expert-v2", "ant")])
def test_d4rl_names_get_published_reference_scores(data_dir, tmp_path, make_dataset, name, env):
    import_dataset(str(_npz(tmp_path, make_dataset, "plain", with_refs=False)), name)
    dataset = resolve_dataset(name)
    assert (dataset.metadata.ref_min_score, dataset.metadata.ref_max_score) == D4RL_REFERENCE_SCORES[env]
    assert dataset.metadata.env_id == {"hopper": "Hopper-v4", "halfcheetah": "HalfCheetah-v4",
                                       "walker2d": "Walker2d-v4", "ant": "Ant-v5"}[env]
    assert normalized_score(3234.3, *D4RL_REFERENCE_SCORES["hopper"]) == pytest.approx(100.0)


def test_own_reference_scores_win_and_other_names_get_none(data_dir, tmp_path, make_dataset):
    import_dataset(str(_npz(tmp_path, make_dataset, "refs")), "hopper-random-v2")
    assert resolve_dataset("hopper-random").metadata.ref_max_score == 250.25
    import_dataset(str(_npz(tmp_path, make_dataset, "plain", with_refs=False)), "hoppers-random")
    assert resolve_dataset("hoppers-random").metadata.ref_max_score is None


def test_errors_are_one_sentence(data_dir, tmp_path, make_dataset):
    source = _npz(tmp_path, make_dataset, "x")
    import_dataset(str(source), "taken")
    with pytest.raises(DatasetError, match="already registered"):
        import_dataset(str(source), "taken")
    import_dataset(str(source), "taken", overwrite=True)
    with pytest.raises(DatasetError, match=r"Unknown dataset 'nope'.*default, taken-v0"):
        resolve_dataset("nope")
    with pytest.raises(DatasetError, match="not usable"):
        import_dataset(str(source), "bad name!")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(DatasetError, match="not writable"):
        import_dataset(str(source), "y", data_dir=str(blocker / "sub"))
    with pytest.raises(ConfigError, match="Unknown Gymnasium environment"):
        make_suite("NoSuchEnv-v0", ["random"], budget=10, size=10, progress=False)
    with pytest.raises(ConfigError, match="expected a continuous Box"):
        make_suite("CartPole-v1", ["random"], budget=10, size=10, progress=False)
    with pytest.raises(ConfigError, match="Unknown dataset level"):
        make_suite("Pendulum-v1", ["hard"], budget=10, size=10, progress=False)


def test_default_is_the_shipped_dataset_with_reference_scores(data_dir):
    dataset = resolve_dataset("default")
    meta = dataset.metadata
    assert meta.env_id == "HalfCheetah-v5"
    assert meta.ref_min_score is not None and meta.ref_max_score is not None
    assert meta.ref_max_score > meta.ref_min_score
    assert dataset.num_transitions >= 10_000
    mean_score = float(np.mean(normalized_score(dataset.episode_returns(), meta.ref_min_score, meta.ref_max_score)))
    assert 0.0 < mean_score < 60.0  # sub-optimal behaviour: room to improve
    assert meta.provenance["level"] == "medium-replay"
    assert list_datasets()[0]["name"] == "default"
