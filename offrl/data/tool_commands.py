"""`offrl datasets corrupt` and `offrl datasets label`: write a changed copy of a dataset.

The copy goes to `--out PATH` (`.npz` or `.hdf5` by extension, otherwise a Minari dataset
directory whose last component is its id, e.g. `out/hopper-corrupt-v0`) or to `--name NAME` in
the registry of `--data-dir`. Every writer writes to a temporary file or directory and renames
it into place, so a failure leaves nothing half-written; an existing target is refused unless
`--overwrite`.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import h5py
import numpy as np

from offrl.atomic import atomic_write_bytes
from offrl.data.corruption import MODES, TARGETS, corrupt_dataset
from offrl.data.dataset import Dataset
from offrl.data.labelling import METHODS, label_dataset
from offrl.errors import ConfigError, DatasetError


def add_dataset_tool_commands(dataset_commands) -> None:
    """Add `corrupt` and `label` to the `offrl datasets` subcommands."""
    corrupt = dataset_commands.add_parser(
        "corrupt", help="a copy with corrupted observations, actions, rewards or dynamics (RIQL's protocol)",
        description="Corrupt a fraction of the transitions as RIQL does (Yang et al. 2023): observations, actions "
                    "and next observations (dynamics) get x + U(-scale, scale) * std; rewards U(-scale, scale) * 30 "
                    "(random) or -scale * r (adversarial). Provenance records the rows, seed and settings.")
    corrupt.add_argument("dataset", help="dataset path or registered name")
    corrupt.add_argument("--target", required=True, choices=TARGETS, help="which field to corrupt")
    corrupt.add_argument("--mode", default="random", choices=MODES, help="random (default) or adversarial (rewards only)")
    corrupt.add_argument("--rate", type=float, default=0.1, help="fraction of transitions changed, in [0, 1] (default 0.1, RIQL.py)")
    corrupt.add_argument("--scale", type=float, default=0.3, help="corruption range epsilon (default 0.3, RIQL.py --corruption_range)")
    corrupt.add_argument("--seed", type=int, default=0, help="chooses the rows and the noise (default 0)")
    corrupt.set_defaults(handler=cmd_datasets_corrupt)

    label = dataset_commands.add_parser(
        "label", help="a copy with rewards labelled from expert demonstrations (OTR, SEABO) or zeroed",
        description="Label rewards: otr (optimal transport to the demonstrations, Luo et al. 2023), seabo "
                    "(nearest-neighbour distance to the demonstrations, Lyu et al. 2024) or zero.")
    label.add_argument("dataset", help="dataset path or registered name")
    label.add_argument("--method", required=True, choices=METHODS)
    label.add_argument("--expert", default=None, metavar="DEMOS", help="expert demonstrations: dataset path or registered name")
    label.add_argument("--overwrite-rewards", action="store_true", help="replace the rewards the dataset already has")
    label.set_defaults(handler=cmd_datasets_label)

    for sub in (corrupt, label):
        sub.add_argument("--out", default=None, metavar="PATH", help="write to PATH: .npz, .hdf5, or a Minari directory .../NAME-vN")
        sub.add_argument("--name", default=None, help="register the result under NAME in the data directory")
        sub.add_argument("--overwrite", action="store_true", help="replace an existing --out / --name")
        sub.add_argument("--data-dir", default=None, help="offrl data directory (default: $OFFRL_DATA_DIR or ~/.offrl)")
        sub.add_argument("--clip-actions", action="store_true", help="clip dataset actions into the action space instead of refusing them")


def _check_destination(args: argparse.Namespace) -> None:
    if (args.out is None) == (args.name is None):
        raise ConfigError("Expected exactly one of --out PATH and --name NAME for the new dataset.")
    if args.out is not None and Path(args.out).exists() and not args.overwrite:
        raise ConfigError(f"--out {args.out} already exists; expected a new path (or --overwrite).")


def write_dataset(dataset: Dataset, out: str | None, name: str | None, data_dir: str | None, overwrite: bool) -> Path:
    """Write `dataset` to `out` (by extension) or register it as `name`; return where it went."""
    from offrl.data.d4rl_io import write_npz
    from offrl.data.minari_io import write_minari
    from offrl.data.registry import datasets_root, registered_name

    if name is not None:
        dataset_id = registered_name(name)
        dataset.metadata.name = dataset_id
        return write_minari(dataset, dataset_id, root=datasets_root(data_dir, create=True), overwrite=overwrite)
    path = Path(out)
    if path.suffix == ".npz":
        return write_npz(dataset, path)
    if path.suffix in (".hdf5", ".h5"):
        return write_d4rl_hdf5(dataset, path)
    dataset.metadata.name = path.name
    return write_minari(dataset, path.name, root=path.parent.resolve(), overwrite=overwrite)


def write_d4rl_hdf5(dataset: Dataset, path: Path) -> Path:
    """D4RL layout (flat arrays, terminals and timeouts, next_observations), the reference scores
    and env id as root attributes, offrl's provenance as JSON in `metadata/offrl_provenance`."""
    from offrl.data.d4rl_io import to_jsonable

    ends = dataset.episode_ends[:-1] - 1
    unflagged = ends[~(dataset.terminals[ends] | dataset.timeouts[ends])]
    if len(unflagged):
        raise DatasetError(
            f"{dataset.where}: the episode ending at row {int(unflagged[0])} has neither a terminal nor a timeout flag, "
            "which a D4RL .hdf5 file cannot represent; expected --out with .npz or a Minari directory."
        )
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as file:
        for key in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts"):
            file.create_dataset(key, data=getattr(dataset, key))
        meta = dataset.metadata
        for key in ("ref_min_score", "ref_max_score"):
            if getattr(meta, key) is not None:
                file.attrs[key] = float(getattr(meta, key))
        if meta.env_id is not None:
            file.attrs["env_id"] = meta.env_id
        file.create_group("metadata").attrs["offrl_provenance"] = json.dumps(to_jsonable(meta.provenance))
    atomic_write_bytes(path, buffer.getvalue())
    return path


def cmd_datasets_corrupt(args: argparse.Namespace) -> int:
    from offrl.data.registry import resolve_dataset

    _check_destination(args)
    dataset = resolve_dataset(args.dataset, data_dir=args.data_dir, clip_actions=args.clip_actions)
    corrupted = corrupt_dataset(dataset, args.target, args.mode, args.rate, args.scale, args.seed)
    where = write_dataset(corrupted, args.out, args.name, args.data_dir, args.overwrite)
    record = corrupted.metadata.provenance["corruption"]
    print(f"corrupted {record['num_rows']} of {dataset.num_transitions} transitions ({args.target}, {args.mode}, "
          f"rate {args.rate}, scale {args.scale}, seed {args.seed}): {where}")
    return 0


def cmd_datasets_label(args: argparse.Namespace) -> int:
    from offrl.data.registry import resolve_dataset

    _check_destination(args)
    if args.method != "zero" and args.expert is None:
        raise ConfigError(f"--method {args.method} needs demonstrations; expected --expert DEMOS.")
    dataset = resolve_dataset(args.dataset, data_dir=args.data_dir, clip_actions=args.clip_actions)
    demos = None if args.expert is None else resolve_dataset(args.expert, data_dir=args.data_dir, clip_actions=args.clip_actions)
    labelled = label_dataset(dataset, args.method, demos, overwrite_rewards=args.overwrite_rewards)
    where = write_dataset(labelled, args.out, args.name, args.data_dir, args.overwrite)
    rewards = labelled.rewards
    print(f"labelled {dataset.num_transitions} transitions with {args.method} (rewards {np.min(rewards):.3g} to "
          f"{np.max(rewards):.3g}, mean {np.mean(rewards):.3g}): {where}")
    return 0
