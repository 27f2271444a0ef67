"""Per-dataset presets: the files, selection by dataset name, override order, --print-config,
wrong-environment refusal, the record in config.json, and presets in sweep trials."""

from __future__ import annotations

import dataclasses
import json

import pytest

from offrl.algos import ALGORITHMS
from offrl.cli import main
from offrl.data.d4rl_io import write_npz
from offrl.data.registry import import_dataset
from offrl.errors import ConfigError
from offrl.sweep.spec import parse_spec
from offrl.train.offline import TrainConfig
from offrl.train.presets import choose_preset, load_presets, preset_key_for

from reliability_helpers import pendulum_shaped_dataset


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def printed_config(capsys, *argv) -> dict:
    code, out, err = run_cli(capsys, "train", *argv, "--print-config")
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_every_preset_sets_real_fields_and_cites_a_reference_file(algorithm):
    config_fields = {field.name for field in dataclasses.fields(ALGORITHMS[algorithm].Config)}
    train_fields = {field.name for field in dataclasses.fields(TrainConfig)}
    for name, preset in load_presets(algorithm).items():
        assert set(preset.config) <= config_fields, (name, set(preset.config) - config_fields)
        assert set(preset.train) <= train_fields, (name, set(preset.train) - train_fields)
        parts = preset.source.split()  # "owner/name@commit path/to/file" (OSRL's: + the per-task config class)
        assert len(parts) == 2 or (len(parts) == 3 and parts[0].startswith("liuzuxin/OSRL@")), preset.source
        repository = parts[0].split("@")[0]
        config_files = (".yaml", ".yml", "/d4rl/" + name.replace("-v2", "").replace("-", "_") + ".py",
                        "/d4rl/" + name.replace("-medium-replay-v2", "_mixed") + ".py")
        endings = {"tinkoff-ai/CORL": config_files, "tinkoff-ai/ReBRAC": config_files, "thuml/SPOT": config_files,
                   "tianheyu927/mopo": config_files,
                   "yihaosun1124/OfflineRL-Kit": (" run_example/run_combo.py",),  # its suggested-hypers docstring
                   "yihaosun1124/mobile": ("configs/gym/" + name.replace("-v2", "").replace("-", "_") + ".py",),
                   "seohongpark/fql": (" README.md",),  # the README's per-task commands
                   "YangRui2015/RIQL": (" RIQL_config.py",),  # get_config: per env and corruption
                   "liuzuxin/OSRL": ("_configs.py",)}  # examples/configs/<algo>_configs.py (tests/test_presets_safe.py)
        assert repository in endings, preset.source
        assert " ".join(parts[:2]).endswith(endings[repository]), preset.source
        ALGORITHMS[algorithm].Config(**preset.config)  # the values are accepted


def test_presets_hold_the_references_values():
    """Spot checks against the reference files (values read from tinkoff-ai/ReBRAC and CORL at the cited commits)."""
    rebrac = load_presets("rebrac")["hopper-medium-replay-v2"]
    assert (rebrac.config["actor_bc_coef"], rebrac.config["critic_bc_coef"]) == (0.05, 0.5)
    assert load_presets("rebrac")["antmaze-large-play-v2"].config["discount"] == 0.999
    sac_n = load_presets("sac_n")["hopper-medium-v2"]
    assert sac_n.config["num_critics"] == 500 and sac_n.train["steps"] == 3_000_000
    edac = load_presets("edac")["halfcheetah-medium-expert-v2"]
    assert (edac.config["num_critics"], edac.config["eta"], edac.train["steps"]) == (10, 5.0, 3_000_000)
    dt = load_presets("dt")["hopper-medium-v2"]
    assert (dt.config["target_return"], dt.config["return_scale"], dt.train["steps"]) == (3600.0, 1000.0, 100_000)
    iql = load_presets("iql")
    assert iql["hopper-medium-replay-v2"].config == {"expectile": 0.7, "temperature": 3.0, "tau": 0.001, "normalize_rewards": True}
    assert (iql["antmaze-umaze-v2"].config["expectile"], iql["antmaze-umaze-v2"].config["temperature"]) == (0.9, 10.0)
    assert iql["antmaze-umaze-v2"].train["reward_offset"] == -1.0 and iql["antmaze-umaze-v2"].config["normalize_rewards"] is False
    cql_train = load_presets("cql")["antmaze-umaze-v2"].train
    assert (cql_train["reward_multiplier"], cql_train["reward_offset"]) == (10.0, -5.0)  # CORL cql.py: 10 r - 5
    assert load_presets("rebrac")["antmaze-umaze-v2"].train["reward_multiplier"] == 100.0  # ReBRAC normalize_reward: r * 100
    assert load_presets("td3bc")["antmaze-umaze-v2"].train["reward_offset"] == -1.0
    assert load_presets("cql")["antmaze-umaze-v2"].config["lagrange"] is True
    assert load_presets("awac")["antmaze-umaze-v2"].config["awac_lambda"] == 0.1
    assert load_presets("spot")["hopper-medium-v2"].config["support_weight"] == 0.1


def test_fql_presets_hold_the_readmes_values():
    """seohongpark/fql README.md at 719d04417cb0b206deddbc7d761b3e710c3d750c, "FQL on D4RL":
    antmaze-umaze-v2 --offline_steps=500000 --agent.alpha=10, antmaze-large-play-v2 --agent.alpha=3,
    pen-expert-v1 --offline_steps=500000 --agent.q_agg=min --agent.alpha=3000, hammer-cloned-v1 --agent.alpha=10000;
    the runs keep agents/fql.py get_config's normalize_q_loss=False."""
    fql = load_presets("fql")
    assert fql["antmaze-umaze-v2"].config == {"alpha": 10.0, "normalize_q_loss": False}
    assert fql["antmaze-large-play-v2"].config["alpha"] == 3.0 and fql["antmaze-large-play-v2"].train["steps"] == 500_000
    assert fql["antmaze-umaze-v2"].train["reward_offset"] == -1.0  # envs/d4rl_utils.py get_dataset: rewards - 1.0
    assert fql["pen-expert-v1"].config == {"alpha": 3000.0, "q_aggregation": "min", "normalize_q_loss": False}
    assert fql["hammer-cloned-v1"].config["alpha"] == 10000.0 and fql["hammer-cloned-v1"].train["steps"] == 500_000
    assert "reward_offset" not in fql["pen-expert-v1"].train  # d4rl_utils.py shifts AntMaze rewards only


def test_riql_presets_hold_the_configs_values():
    """YangRui2015/RIQL RIQL_config.py at cc07d81201e4cd44415560523fcd719f57bbf12c, random
    observation corruption: hopper sigma 0.1, quantile 0.25, num_critics 3; halfcheetah quantile 0.1;
    RIQL.py: 3000 epochs x 1000 updates."""
    riql = load_presets("riql")
    hopper = riql["hopper-medium-replay-v2"]
    assert (hopper.config["huber_sigma"], hopper.config["quantile"], hopper.config["num_critics"]) == (0.1, 0.25, 3)
    assert riql["halfcheetah-medium-replay-v2"].config["quantile"] == 0.1 and hopper.train["steps"] == 3_000_000
    assert "random rewards: --huber-sigma 1.0 --quantile 0.25 --num-critics 3" in hopper.note  # other corruptions as flags


def test_public_name_picks_its_preset_and_flags_override_it(capsys):
    chosen = printed_config(capsys, "rebrac", "--dataset", "d4rl/hopper-medium-replay-v2")
    assert chosen["preset"]["name"] == "hopper-medium-replay-v2"
    assert "configs/rebrac/hopper/hopper_medium_replay.yaml" in chosen["preset"]["source"]
    assert (chosen["algorithm_config"]["actor_bc_coef"], chosen["algorithm_config"]["critic_bc_coef"]) == (0.05, 0.5)
    assert chosen["env_id"] == "Hopper-v4"
    given = printed_config(capsys, "rebrac", "--dataset", "d4rl/hopper-medium-replay-v2", "--actor-bc-coef", "0.3")
    assert given["algorithm_config"]["actor_bc_coef"] == 0.3 and given["algorithm_config"]["critic_bc_coef"] == 0.5
    off = printed_config(capsys, "rebrac", "--dataset", "d4rl/hopper-medium-replay-v2", "--preset", "none")
    defaults = ALGORITHMS["rebrac"].Config()
    assert off["preset"] is None and off["algorithm_config"]["actor_bc_coef"] == defaults.actor_bc_coef
    budget = printed_config(capsys, "sac_n", "--dataset", "d4rl/hopper-medium-v2")
    assert budget["train"]["steps"] == 3_000_000 and budget["algorithm_config"]["num_critics"] == 500
    cheaper = printed_config(capsys, "sac_n", "--dataset", "d4rl/hopper-medium-v2", "--steps", "5000")
    assert cheaper["train"]["steps"] == 5000 and cheaper["algorithm_config"]["num_critics"] == 500
    antmaze = printed_config(capsys, "iql", "--dataset", "D4RL/antmaze/umaze-v1")
    assert antmaze["preset"]["name"] == "antmaze-umaze-v2" and antmaze["algorithm_config"]["expectile"] == 0.9
    assert antmaze["train"]["reward_offset"] == -1.0 and antmaze["algorithm_config"]["normalize_rewards"] is False
    unshifted = printed_config(capsys, "iql", "--dataset", "D4RL/antmaze/umaze-v1", "--reward-offset", "0")
    assert unshifted["train"]["reward_offset"] == 0.0  # a flag overrides the preset's train field too
    explicit = printed_config(capsys, "iql", "--dataset", "d4rl/hopper-random-v2", "--preset", "hopper-medium-replay-v2")
    assert explicit["algorithm_config"]["tau"] == 0.001
    assert printed_config(capsys, "bc", "--dataset", "d4rl/hopper-medium-v2")["preset"] is None  # no tuning: defaults


def test_minari_adroit_names_pick_corls_adroit_presets(capsys):
    """Minari's D4RL/<task>/<level>-v2 are D4RL's <task>-<level>-v1 (Farama-Foundation/minari-dataset-generation-scripts
    scripts/adroit/recreate_adroit_pen.py@62f1432), CORL's Adroit config names. Values hand-copied from
    tinkoff-ai/CORL@6afec90: configs/offline/iql/pen/human_v1.yaml (iql_tau 0.8, beta 3.0, normalize_reward false,
    actor_dropout 0.1), configs/offline/rebrac/pen/human_v1.yaml (actor_bc_coef 0.1, critic_bc_coef 0.5,
    actor_learning_rate 3e-4, batch_size 256, num_epochs 1000 x num_updates_on_epoch 1000),
    configs/offline/td3_bc/pen/human_v1.yaml (alpha 2.5, max_timesteps 1000000),
    configs/offline/edac/pen/human_v1.yaml (num_critics 20, eta 1000.0) and
    configs/offline/dt/hammer/expert_v1.yaml (target_returns [12800, 6400], reward_scale 1.0)."""
    assert [preset_key_for(f"D4RL/{task}/cloned-v2") for task in ("pen", "door", "hammer", "relocate")] == [
        "pen-cloned-v1", "door-cloned-v1", "hammer-cloned-v1", "relocate-cloned-v1"]
    assert preset_key_for("D4RL/kitchen/mixed-v2") is None and preset_key_for("D4RL/pen/human-v1") is None
    iql = printed_config(capsys, "iql", "--dataset", "D4RL/pen/human-v2")
    assert iql["preset"]["name"] == "pen-human-v1" and iql["preset_line"].startswith("preset: iql/pen-human-v1")
    assert iql["preset"]["source"] == "tinkoff-ai/CORL@6afec90 configs/offline/iql/pen/human_v1.yaml"
    assert (iql["algorithm_config"]["expectile"], iql["algorithm_config"]["temperature"]) == (0.8, 3.0)
    assert iql["algorithm_config"]["normalize_rewards"] is False  # offrl's IQL default scales rewards
    assert "dropout 0.1" in iql["preset"]["note"]  # said, since offrl's IQL actor has no dropout
    rebrac = printed_config(capsys, "rebrac", "--dataset", "D4RL/pen/human-v2")
    chosen = rebrac["algorithm_config"]
    assert (chosen["actor_bc_coef"], chosen["critic_bc_coef"], chosen["actor_learning_rate"], chosen["batch_size"]) == (
        0.1, 0.5, 0.0003, 256)
    assert rebrac["train"]["steps"] == 1_000_000 and rebrac["train"]["reward_multiplier"] == 1.0
    td3bc = printed_config(capsys, "td3bc", "--dataset", "D4RL/pen/human-v2")
    assert td3bc["preset"]["name"] == "pen-human-v1" and td3bc["algorithm_config"]["alpha"] == 2.5
    assert td3bc["train"]["steps"] == 1_000_000
    edac = load_presets("edac")["pen-human-v1"]
    assert (edac.config["num_critics"], edac.config["eta"], edac.train["steps"]) == (20, 1000.0, 3_000_000)
    dt = load_presets("dt")["hammer-expert-v1"]
    assert (dt.config["target_return"], dt.config["return_scale"]) == (12800.0, 1.0)
    given = printed_config(capsys, "rebrac", "--dataset", "D4RL/pen/human-v2", "--actor-bc-coef", "0.3",
                           "--steps", "5000")
    assert given["algorithm_config"]["actor_bc_coef"] == 0.3 and given["algorithm_config"]["critic_bc_coef"] == 0.5
    assert given["train"]["steps"] == 5000
    off = printed_config(capsys, "rebrac", "--dataset", "D4RL/pen/human-v2", "--preset", "none")
    defaults = ALGORITHMS["rebrac"].Config()
    assert off["preset"] is None and off["preset_line"].startswith("preset: none (--preset none)")
    assert (off["algorithm_config"]["actor_bc_coef"], off["algorithm_config"]["batch_size"]) == (defaults.actor_bc_coef,
                                                                                               defaults.batch_size)
    code, out, _ = run_cli(capsys, "presets", "edac")
    assert code == 0 and "pen-human-v1" in out and "eta=1000.0" in out
    assert "configs/offline/edac/pen/human_v1.yaml" in out


def test_a_preset_for_another_adroit_task_is_refused(capsys):
    code, _, err = run_cli(capsys, "train", "iql", "--dataset", "D4RL/pen/human-v2", "--preset", "door-human-v1",
                           "--print-config")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "tuned for door" in err
    explicit = printed_config(capsys, "iql", "--dataset", "D4RL/pen/human-v2", "--preset", "pen-expert-v1")
    assert explicit["preset"]["name"] == "pen-expert-v1"  # same task, another level: allowed
    # the env id a Minari Adroit dataset records (gymnasium-robotics', with its evaluation overrides)
    pen_env = 'AdroitHandPen-v1 {"max_episode_steps": 100}'
    assert choose_preset("iql", "pen-cloned-v1", "D4RL/pen/human-v2", pen_env).name == "pen-cloned-v1"
    with pytest.raises(ConfigError, match="tuned for door"):
        choose_preset("iql", "door-human-v1", "D4RL/pen/human-v2", pen_env)
    with pytest.raises(ConfigError, match="tuned for pen"):  # Pendulum is not pen
        choose_preset("iql", "pen-human-v1", "my-pendulum-logs", "Pendulum-v1")
    with pytest.raises(ConfigError, match="tuned for hopper"):
        choose_preset("iql", "hopper-medium-v2", "D4RL/relocate/expert-v2", "AdroitHandRelocate-v1")


def test_bad_preset_input_is_one_sentence(capsys):
    code, _, err = run_cli(capsys, "train", "iql", "--dataset", "d4rl/hopper-medium-v2", "--preset", "halfcheetah-medium-v2",
                           "--print-config")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "tuned for halfcheetah" in err and "Hopper-v4" in err
    code, _, err = run_cli(capsys, "train", "iql", "--dataset", "d4rl/hopper-medium-v2", "--preset", "hopper-mediun-v2",
                           "--print-config")
    assert code == 2 and "not a preset of iql" in err and len(err.strip().splitlines()) == 1
    assert choose_preset("iql", None, "my-own-data", "Hopper-v4") is None  # private names get no preset


def test_presets_command_lists_sources(capsys):
    code, out, _ = run_cli(capsys, "presets", "sac_n")
    assert code == 0 and "hopper-medium-v2" in out and "num_critics=500" in out
    assert "tinkoff-ai/CORL@" in out and "configs/offline/sac_n/hopper/medium_v2.yaml" in out
    code, out, _ = run_cli(capsys, "presets", "bc")
    assert code == 0 and "no presets" in out
    code, _, err = run_cli(capsys, "presets", "nope")
    assert code == 2 and "not known" in err


def test_training_records_the_preset_in_config_json(capsys, tmp_path):
    """The cheap Pendulum-shaped data of test_cli registered under a D4RL name: the name picks the
    preset; evaluation runs in the env the file records (Pendulum-v1), which keeps the test fast."""
    npz = write_npz(pendulum_shaped_dataset(), tmp_path / "pendulum.npz")
    import_dataset(str(npz), "d4rl/hopper-medium-replay-v2")
    code, out, err = run_cli(capsys, "train", "td3bc", "--dataset", "d4rl/hopper-medium-replay-v2", "--run-dir", "run",
                             "--steps", "100", "--log-every", "50", "--eval-every", "100", "--eval-episodes", "2",
                             "--hidden-dims", "32", "32", "--batch-size", "64", "--no-progress", "--alpha", "1.5")
    assert code == 0, err
    assert out.splitlines()[0].startswith("preset: td3bc/hopper-medium-replay-v2")
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["dataset"]["preset"]["name"] == "hopper-medium-replay-v2"
    assert "configs/offline/td3_bc/hopper/medium_replay_v2.yaml" in record["dataset"]["preset"]["source"]
    assert record["algorithm_config"]["alpha"] == 1.5 and record["train"]["steps"] == 100  # flags over the preset


def test_sweep_trials_start_from_presets_and_scale_the_budget():
    raw = {"algorithms": ["sac_n", "td3bc"], "datasets": ["d4rl/hopper-medium-v2", "mine"], "seeds": 2,
           "train": {"eval_episodes": 3}, "presets": True, "budget_scale": 0.01}
    trials = {(t["algorithm"], t["dataset"]): t for t in parse_spec(raw).trials()}
    sac_n = trials[("sac_n", "d4rl/hopper-medium-v2")]
    assert sac_n["algorithm_config"]["num_critics"] == 500 and sac_n["preset"]["name"] == "hopper-medium-v2"
    assert sac_n["train"]["steps"] == 30_000 and sac_n["train"]["eval_episodes"] == 3  # the spec's key wins
    assert sac_n["budget_scale"] == 0.01
    assert trials[("sac_n", "mine")]["preset"] is None and trials[("sac_n", "mine")]["train"]["steps"] == 10_000
    plain = parse_spec({"algorithms": ["td3bc"], "datasets": ["d4rl/hopper-medium-v2"]})
    assert "presets" not in plain.values and "preset" not in plain.trials()[0]  # old specs hash as before
    with pytest.raises(Exception, match="budget_scale"):
        parse_spec({**raw, "budget_scale": 2})
