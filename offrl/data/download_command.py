"""`offrl datasets download NAME`: flags and handler (offrl.cli adds it beside the other dataset commands)."""

from __future__ import annotations

import argparse


def add_download_command(dataset_commands) -> None:
    download = dataset_commands.add_parser(
        "download", help="fetch a public dataset (d4rl/<env>-<level>-v2 or a Minari id) into the data directory",
        description="Fetch a public dataset and register it under its name: D4RL gym files from D4RL's published "
                    "HDF5 URLs (base URL overridable with $OFFRL_D4RL_URL), Minari ids through Minari's own "
                    "download. The file is checked before it is registered; a failed download registers nothing.")
    download.add_argument("name", help="e.g. d4rl/hopper-medium-replay-v2, mujoco/hopper/medium-v0, D4RL/antmaze/umaze-v1")
    download.add_argument("--sha256", default=None, help="expected SHA-256 of the D4RL file (default: not checked)")
    download.add_argument("--size", type=int, default=None, help="expected size in bytes of the D4RL file (default: not checked)")
    download.add_argument("--ref-min", type=float, default=None,
                          help="reference return for score 0, for datasets that record none (Minari mujoco/*-v0)")
    download.add_argument("--ref-max", type=float, default=None, help="reference return for score 100 (with --ref-min)")
    download.add_argument("--data-dir", default=None, help="offrl data directory (default: $OFFRL_DATA_DIR or ~/.offrl)")
    download.set_defaults(handler=cmd_datasets_download)


def cmd_datasets_download(args: argparse.Namespace) -> int:
    from offrl.data.download import download, set_references

    result = download(args.name, data_dir=args.data_dir, expected_sha256=args.sha256, expected_size=args.size,
                      ref_min=args.ref_min, ref_max=args.ref_max, echo=print)
    if result.already_present:
        if args.ref_min is not None:
            set_references(result.name, args.ref_min, args.ref_max, data_dir=args.data_dir)
            print(f"{result.name}: already at {result.path}; reference returns set to {args.ref_min}..{args.ref_max}")
            return 0
        print(f"{result.name}: already at {result.path}")
    else:
        print(f"{result.name}: registered at {result.path}")
    if result.note and args.ref_min is None:
        print(f"note: {result.name} {result.note}")
    return 0
