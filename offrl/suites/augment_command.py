"""`offrl datasets augment NAME --method synther --size N (--out PATH | --name NAME)`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from offrl.errors import ConfigError

METHODS = ("synther",)


def add_augment_command(dataset_commands) -> None:
    augment = dataset_commands.add_parser(
        "augment", help="a copy enlarged with synthetic transitions from a diffusion model (SynthER)",
        description="Train a diffusion model on the dataset's transitions (s, a, r, s', terminal) and append N "
                    "sampled transitions (SynthER, Lu et al. 2023). Provenance records the source fingerprint, the "
                    "model settings and the real and synthetic counts; train on the result as on any dataset.")
    augment.add_argument("dataset", help="dataset path or registered name")
    augment.add_argument("--method", required=True, choices=METHODS)
    augment.add_argument("--size", type=int, required=True, help="number of synthetic transitions to add")
    augment.add_argument("--training-steps", type=int, default=100_000, help="diffusion model updates (default 100000, SynthER)")
    augment.add_argument("--hidden-dims", type=int, nargs="+", default=[1024, 1024, 1024], help="denoiser widths")
    augment.add_argument("--sampling-steps", type=int, default=128, help="sampler steps, at most --diffusion-steps (default 128)")
    augment.add_argument("--diffusion-steps", type=int, default=128, help="steps of the noise schedule (default 128)")
    augment.add_argument("--seed", type=int, default=0)
    augment.add_argument("--out", default=None, metavar="PATH", help="write to PATH: .npz, .hdf5, or a Minari directory .../NAME-vN")
    augment.add_argument("--name", default=None, help="register the result under NAME in the data directory")
    augment.add_argument("--overwrite", action="store_true", help="replace an existing --out / --name")
    augment.add_argument("--data-dir", default=None, help="offrl data directory (default: $OFFRL_DATA_DIR or ~/.offrl)")
    augment.set_defaults(handler=cmd_datasets_augment)


def cmd_datasets_augment(args: argparse.Namespace) -> int:
    from offrl.data.registry import resolve_dataset
    from offrl.data.tool_commands import write_dataset
    from offrl.suites.synther import SynthERConfig, augment_with_synther

    if (args.out is None) == (args.name is None):
        raise ConfigError("Expected exactly one of --out PATH and --name NAME for the new dataset.")
    if args.out is not None and Path(args.out).exists() and not args.overwrite:
        raise ConfigError(f"--out {args.out} already exists; expected a new path (or --overwrite).")
    if args.size <= 0:
        raise ConfigError(f"--size is {args.size}; expected a positive number of synthetic transitions.")
    config = SynthERConfig(hidden_dims=tuple(args.hidden_dims), training_steps=args.training_steps,
                           sampling_steps=args.sampling_steps, diffusion_steps=args.diffusion_steps, seed=args.seed)
    config.validate()  # before any training: a bad setting costs nothing
    dataset = resolve_dataset(args.dataset, data_dir=args.data_dir)
    augmented, _ = augment_with_synther(dataset, args.size, config)
    where = write_dataset(augmented, args.out, args.name, args.data_dir, args.overwrite)
    record = augmented.metadata.provenance["synther"]
    print(json.dumps({"written": str(where), "real_transitions": record["real_transitions"],
                      "synthetic_transitions": record["synthetic_transitions"],
                      "final_denoising_loss": round(record["final_denoising_loss"], 4)}))
    return 0
