"""OSRL's per-task settings as presets of the safe algorithms (bcq_lag, cpq, coptidice, cdt): the files,
spot checks against OSRL's configs, `offrl presets`, and `--preset` on offrl's own velocity datasets."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from offrl.algos import ALGORITHMS
from offrl.cli import main
from offrl.data.d4rl_io import write_npz
from offrl.data.dataset import Dataset, DatasetMetadata
from offrl.envs.velocity_cost import velocity_env_id
from offrl.errors import ConfigError
from offrl.train.presets import apply_preset, choose_preset, load_presets

OSRL = "liuzuxin/OSRL@03a4586"
CONFIG_FILES = {"bcq_lag": ("bcql", "BCQL"), "cpq": ("cpq", "CPQ"), "coptidice": ("coptidice", "COptiDICE"),
                "cdt": ("cdt", "CDT")}  # examples/configs/<file>_configs.py, its classes' prefix
DSRL_TASKS = 38  # each *_DEFAULT_CONFIG of OSRL's configs: 8 Bullet, 16 Safety-Gymnasium, 5 velocity, 9 MetaDrive


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("algorithm", sorted(CONFIG_FILES))
def test_every_safe_preset_is_a_valid_config_citing_its_osrl_class(algorithm):
    module = ALGORITHMS[algorithm]
    config_fields = {field.name for field in dataclasses.fields(module.Config)}
    file, prefix = CONFIG_FILES[algorithm]
    presets = load_presets(algorithm)
    assert len(presets) == DSRL_TASKS and all(name.startswith("Offline") for name in presets)
    for name, preset in presets.items():
        assert set(preset.config) <= config_fields, (name, set(preset.config) - config_fields)
        assert set(preset.train) == {"steps"}, name
        location, class_name = preset.source.rsplit(" ", 1)
        assert location == f"{OSRL} examples/configs/{file}_configs.py", preset.source
        assert class_name.startswith(prefix) and class_name.endswith("Config"), preset.source
        config = module.Config(**apply_preset(preset, module.Config, {}))
        if hasattr(module, "check_config"):
            module.check_config(config)


def test_safe_presets_hold_osrls_values():
    """Hand-read from liuzuxin/OSRL@03a4586 examples/configs: CDTHopperVelocityConfig (episode_len 1000,
    target_returns (1750, 20/40/80), deg 1, max_reward 2000, max_rew_decrease 300), CDTCarCircle1Config (target
    returns 20 / 22.5 / 25 at costs 20 / 40 / 80), CDTCarRunConfig (deg 0), BCQLBallRunConfig (episode_len 100),
    *HopperVelocityConfig (episode_len 1000), *EasySparseConfig (update_steps 200_000); the base TrainConfigs:
    episode_len 300, update_steps 100_000, CDT max_reward 600 and max_rew_decrease 100."""
    cdt = load_presets("cdt")
    hopper = cdt["OfflineHopperVelocityGymnasium-v1"]
    assert hopper.config == {"max_episode_steps": 1000, "augment_degree": 1, "augment_max_return": 2000.0,
                             "augment_max_return_decrease": 300.0, "target_return": 1750.0}
    assert hopper.train == {"steps": 100_000} and "target costs 20, 40 and 80" in hopper.note
    circle = cdt["OfflineCarCircle1Gymnasium-v0"]
    assert "target_return" not in circle.config and "(20, 20), (22.5, 40), (25, 80)" in circle.note
    car_run = cdt["OfflineCarRun-v0"]  # OSRL's deg 0: a flat frontier
    assert car_run.config["augment_degree"] == 0 and car_run.config["target_return"] == 575.0
    base = cdt["OfflineCarCircle-v0"]  # OSRL's base values where offrl's defaults differ
    assert base.config == {"max_episode_steps": 300, "augment_max_return": 600.0, "augment_max_return_decrease": 100.0}
    for algorithm in ("bcq_lag", "cpq", "coptidice"):
        presets = load_presets(algorithm)
        assert presets["OfflineBallRun-v0"].config == {"max_episode_steps": 100}
        assert presets["OfflineHopperVelocityGymnasium-v1"].config == {"max_episode_steps": 1000}
        assert presets["OfflineCarCircle-v0"].config == {}  # OSRL's base: T = 300, offrl's default
        assert presets["OfflineMetadrive-easysparse-v0"].train == {"steps": 200_000}
        assert presets["OfflineAntRun-v0"].train == {"steps": 100_000}


def test_presets_command_lists_the_safe_presets_with_sources(capsys):
    code, out, _ = run_cli(capsys, "presets", "cdt")
    assert code == 0 and "OfflineHopperVelocityGymnasium-v1" in out and "target_return=1750.0" in out
    assert f"source: {OSRL} examples/configs/cdt_configs.py CDTHopperVelocityConfig" in out
    code, out, _ = run_cli(capsys, "presets", "bcq_lag")
    assert code == 0 and "no presets" not in out and "OfflineBallRun-v0" in out and "max_episode_steps=100" in out


def velocity_dataset(robot: str, path) -> str:
    """Two 5-step episodes with costs, recorded as offrl's velocity task of `robot` (nothing is simulated)."""
    dims = {"Hopper": (11, 3), "HalfCheetah": (17, 6)}[robot]
    rng = np.random.default_rng(0)
    rows = 10
    dataset = Dataset(observations=rng.normal(size=(rows, dims[0])), actions=rng.uniform(-1, 1, (rows, dims[1])),
                      rewards=rng.normal(size=rows), next_observations=rng.normal(size=(rows, dims[0])),
                      terminals=np.zeros(rows), timeouts=np.tile([0, 0, 0, 0, 1], 2), episode_starts=[0, 5],
                      costs=rng.integers(0, 2, rows), metadata=DatasetMetadata(env_id=velocity_env_id(robot)))
    return str(write_npz(dataset, path))


def test_a_dsrl_velocity_preset_applies_to_offrls_velocity_data_of_its_robot_only(capsys, tmp_path):
    hopper = velocity_dataset("Hopper", tmp_path / "hopper.npz")
    code, out, err = run_cli(capsys, "train", "bcq_lag", "--dataset", hopper, "--preset",
                             "OfflineHopperVelocityGymnasium-v1", "--print-config")
    assert code == 0, err
    chosen = json.loads(out)
    assert chosen["env_id"] == "offrl/SafetyHopperVelocity-v1" and chosen["preset"]["name"] == "OfflineHopperVelocityGymnasium-v1"
    assert chosen["algorithm_config"]["max_episode_steps"] == 1000 and chosen["train"]["steps"] == 100_000
    code, out, err = run_cli(capsys, "train", "cdt", "--dataset", hopper, "--preset",
                             "OfflineHopperVelocityGymnasium-v1", "--target-return", "300", "--print-config")
    assert code == 0, err
    given = json.loads(out)["algorithm_config"]
    assert (given["target_return"], given["augment_degree"], given["max_episode_steps"]) == (300.0, 1, 1000)
    cheetah = velocity_dataset("HalfCheetah", tmp_path / "cheetah.npz")
    code, _, err = run_cli(capsys, "train", "bcq_lag", "--dataset", cheetah, "--preset",
                           "OfflineHopperVelocityGymnasium-v1", "--print-config")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "offrl/SafetyHalfCheetahVelocity-v1" in err
    swimmer = choose_preset("cpq", "OfflineSwimmerVelocityGymnasium-v1", "mine", velocity_env_id("Swimmer"))
    assert swimmer.config == {"max_episode_steps": 1000}
    with pytest.raises(ConfigError, match="tuned for OfflineAntRun"):  # Bullet's ant, not the MuJoCo robot
        choose_preset("cpq", "OfflineAntRun-v0", "mine", velocity_env_id("Ant"))


def test_an_optional_number_flag_takes_none_and_refuses_other_words(capsys, tmp_path):
    """`--cost-token-offset none` and `--cost-sample-offset NONE` turn OSRL's CDT defaults (50, 70) off;
    a word that is neither a number nor none is one sentence, exit 2."""
    hopper = velocity_dataset("Hopper", tmp_path / "hopper.npz")
    code, out, err = run_cli(capsys, "train", "cdt", "--dataset", hopper, "--preset", "none", "--print-config")
    assert code == 0, err
    defaults = json.loads(out)["algorithm_config"]
    assert (defaults["cost_token_offset"], defaults["cost_sample_offset"]) == (50.0, 70.0)
    code, out, err = run_cli(capsys, "train", "cdt", "--dataset", hopper, "--cost-token-offset", "none",
                             "--cost-sample-offset", "NONE", "--print-config")
    assert code == 0, err
    given = json.loads(out)["algorithm_config"]
    assert given["cost_token_offset"] is None and given["cost_sample_offset"] is None
    code, _, err = run_cli(capsys, "train", "cdt", "--dataset", hopper, "--cost-token-offset", "x", "--print-config")
    assert code == 2 and err.strip().count("\n") == 0 and "--cost-token-offset is 'x'; expected a number or none" in err
