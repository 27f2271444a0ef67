"""`offrl datasets import FILE`: register a dataset file under a name, tabular logs included.

A .csv/.parquet file is read with a column mapping (flags or `--mapping FILE.yaml`, see
offrl.data.tabular_io); a D4RL .hdf5, .npz or Minari directory is read as it is. No env id is
needed: a dataset without one trains with offline estimates only (docs/offline-without-simulator.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from offrl.data.registry import import_dataset
from offrl.data.tabular_io import TABULAR_SUFFIXES, column_mapping, read_mapping_file, read_tabular
from offrl.errors import DatasetError

_FLAGS = {  # flag -> mapping key
    "obs_cols": "observations", "action_cols": "actions", "reward_col": "reward", "episode_col": "episode",
    "terminal_col": "terminal", "timeout_col": "timeout", "next_obs_cols": "next_observations",
    "action_low": "action_low", "action_high": "action_high", "env": "env_id",
}


def configure_import(importing: argparse.ArgumentParser) -> None:
    """Add the tabular flags to the `datasets import` parser and make it use `cmd_import`."""
    group = importing.add_argument_group("tabular logs (.csv, .parquet)")
    group.add_argument("--mapping", default=None, metavar="YAML", help="column mapping file (keys: observations, actions, reward, episode, terminal, timeout, next_observations, action_low, action_high); flags override it")
    group.add_argument("--obs-cols", default=None, help="observation columns: comma-separated names or patterns such as 'obs_*'")
    group.add_argument("--action-cols", default=None, help="action columns: names or patterns")
    group.add_argument("--reward-col", default=None, help="reward column")
    group.add_argument("--episode-col", default=None, help="episode id column (rows of an episode contiguous); default: episodes end at terminal/timeout flags")
    group.add_argument("--terminal-col", default=None, help="terminal flag column (the process ended: no bootstrap)")
    group.add_argument("--timeout-col", default=None, help="timeout flag column (the log was cut: bootstrap)")
    group.add_argument("--next-obs-cols", default=None, help="next-observation columns (default: the next row of the same episode)")
    group.add_argument("--action-low", default=None, help="action lower bound: one number or one per dimension, comma-separated (default: the data's minimum)")
    group.add_argument("--action-high", default=None, help="action upper bound (default: the data's maximum)")
    group.add_argument("--env", default=None, metavar="ENV_ID", help="a Gymnasium env id to record, if there is a simulator (default: none)")
    importing.set_defaults(handler=cmd_import)


def cmd_import(args: argparse.Namespace) -> int:
    path = Path(args.file)
    name = args.name or path.stem
    dataset = None
    if path.suffix.lower() in TABULAR_SUFFIXES:
        values = read_mapping_file(args.mapping) if args.mapping else {}
        values.update({key: getattr(args, flag) for flag, key in _FLAGS.items() if getattr(args, flag) is not None})
        where = f"mapping file '{args.mapping}'" if args.mapping else "the column flags"
        dataset = read_tabular(path, column_mapping(values, where=where))
    elif args.mapping or any(getattr(args, flag) is not None for flag in _FLAGS if flag != "env"):
        raise DatasetError(f"'{path}' is not a .csv or .parquet file; expected column flags and --mapping only for tabular logs.")
    target = import_dataset(str(path), name, data_dir=args.data_dir, overwrite=args.overwrite, dataset=dataset)
    if dataset is not None:
        dropped = dataset.metadata.provenance.get("rows_dropped_without_next_observation", 0)
        print(f"{dataset.num_transitions} transitions in {dataset.num_episodes} episodes"
              f"{f' ({dropped} last rows without a next observation dropped)' if dropped else ''}; "
              f"action bounds: {dataset.metadata.provenance['action_bounds']}")
    print(f"imported {args.file} as {target.name}: {target}")
    return 0
