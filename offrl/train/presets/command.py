"""`offrl presets [ALGO]`, and the preset step of `offrl train` (flags, resolution, --print-config)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from offrl.errors import ConfigError
from offrl.train.presets import (Preset, about, apply_preset, choose_preset, describe, load_presets,
                                 preset_key_for)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default=None, metavar="NAME",
                        help="the reference's per-dataset settings to start from: a name from `offrl presets ALGO`, "
                             "or 'none' (default: the dataset's own preset when --dataset is a D4RL/Minari name)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved configuration (algorithm config, train config, preset) as JSON and exit")


def add_command(commands) -> None:
    presets = commands.add_parser("presets", help="the references' per-dataset settings of an algorithm, with sources")
    presets.add_argument("algorithm", nargs="?", default=None, help="algorithm name (default: list algorithms with presets)")
    presets.add_argument("--json", action="store_true", help="print the presets as JSON")
    presets.set_defaults(handler=cmd_presets)


def cmd_presets(args: argparse.Namespace) -> int:
    from offrl.algos import ALGORITHMS

    if args.algorithm is None:
        for name in sorted(ALGORITHMS):
            count = len(load_presets(name))
            print(f"{name:12s} {count:3d} presets" if count else f"{name:12s}   - (no per-dataset tuning in the references)")
        return 0
    name = args.algorithm.lower()
    if name not in ALGORITHMS:
        raise ConfigError(f"Algorithm {args.algorithm!r} is not known; expected one of: {', '.join(sorted(ALGORITHMS))}.")
    presets = load_presets(name)
    if args.json:
        print(json.dumps({key: preset.to_json() for key, preset in presets.items()}, indent=2))
        return 0
    if not presets:
        print(f"{name}: no presets; the references use one setting for every dataset (offrl's defaults).")
        return 0
    print(f"{name}: {about(name)}")
    for key, preset in presets.items():
        values = ", ".join(f"{k}={v}" for k, v in {**preset.config, **preset.train}.items())
        print(f"  {key:28s} {values}")
        print(f"  {'':28s} source: {preset.source}" + (f"; note: {preset.note}" if preset.note else ""))
    return 0


def env_hint(dataset_argument: str | None, env_flag: str | None) -> str | None:
    """The dataset's environment without loading it, where its name says it (for --print-config)."""
    from offrl.data.registry import D4RL_ENV_IDS

    if env_flag:
        return env_flag
    key = preset_key_for(dataset_argument)
    if key is None:
        return None
    family = key.split("-", 1)[0]
    return D4RL_ENV_IDS.get(family, family)


def resolve(algo, train_config_class: type, requested: str | None, dataset_name: str | None, env_id: str | None,
            given_algo: dict[str, Any], given_train: dict[str, Any]) -> tuple[Any, Any, Preset | None]:
    """(algorithm config, train config, preset): defaults < preset < flags given."""
    preset = choose_preset(algo.NAME, requested, dataset_name, env_id)
    algo_config = algo.Config(**apply_preset(preset, algo.Config, given_algo))
    train_values = {**(preset.train if preset is not None else {}), **given_train}
    return algo_config, train_config_class(**train_values), preset


def print_config(algo, train_config_class: type, args: argparse.Namespace, given_algo: dict[str, Any],
                 given_train: dict[str, Any]) -> int:
    from offrl.train.configs import config_to_json

    env = env_hint(args.dataset, given_train.get("env_id"))
    if env is None and args.dataset:  # not a public name: the dataset itself says its environment
        from offrl.data.registry import resolve_dataset

        env = resolve_dataset(args.dataset, data_dir=args.data_dir, clip_actions=args.clip_actions).metadata.env_id
    algo_config, train_config, preset = resolve(algo, train_config_class, args.preset, args.dataset, env,
                                                given_algo, given_train)
    print(json.dumps({"algorithm": algo.NAME, "dataset": args.dataset, "env_id": train_config.env_id or env,
                      "algorithm_config": config_to_json(algo_config), "train": config_to_json(train_config),
                      "preset": preset.to_json() if preset is not None else None,
                      "preset_line": describe(preset, args.dataset, args.preset)}, indent=2))
    return 0
