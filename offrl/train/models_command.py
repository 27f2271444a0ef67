"""`offrl models train --dataset NAME`: train (or find in the cache) the dynamics ensemble that
model-based algorithms (mopo, ...) use for that dataset, and print its held-out errors.

The model is cached under `<data dir>/models/` by dataset fingerprint and config, so a later
`offrl train mopo --dataset NAME` with the same dynamics settings reuses it.
"""

from __future__ import annotations

import argparse

import numpy as np

from offrl.data.registry import resolve_dataset
from offrl.data.transforms import fit_normalizer
from offrl.envs.factory import action_bounds
from offrl.models.training import DynamicsConfig, check_terminal_rows
from offrl.train.model_rollouts import dataset_dynamics, models_dir

DEFAULTS = DynamicsConfig()


def add_command(commands) -> None:
    models = commands.add_parser("models", help="learned dynamics models for model-based algorithms")
    actions = models.add_subparsers(dest="models_command", required=True)
    train = actions.add_parser("train", help="train a dynamics ensemble on a dataset (cached by fingerprint and config)",
                               description=__doc__.splitlines()[0])
    train.add_argument("--dataset", required=True, help="registered dataset name or file")
    train.add_argument("--data-dir", default=None, help="offrl data directory (default: $OFFRL_DATA_DIR or ~/.offrl)")
    train.add_argument("--num-models", type=int, default=DEFAULTS.num_models, help=f"ensemble size (default: {DEFAULTS.num_models})")
    train.add_argument("--num-elites", type=int, default=DEFAULTS.num_elites, help=f"elites (default: {DEFAULTS.num_elites})")
    train.add_argument("--hidden-dims", type=int, nargs="+", default=list(DEFAULTS.hidden_dims),
                       help=f"hidden layer widths (default: {' '.join(map(str, DEFAULTS.hidden_dims))})")
    train.add_argument("--weight-decay", type=float, nargs="+", default=list(DEFAULTS.weight_decay),
                       help="one weight decay per layer, output layer last (default: MBPO's 2.5e-5 5e-5 7.5e-5 7.5e-5 1e-4)")
    train.add_argument("--max-epochs", type=int, default=0, help="cap on epochs; 0: stop after 5 without improvement (default: 0)")
    train.add_argument("--seed", type=int, default=0, help="seed of the split and the initialisation (default: 0)")
    train.add_argument("--terminal-head", action="store_true",
                       help="also learn a terminal logit from the dataset's terminals (what --termination learned uses)")
    train.add_argument("--retrain", action="store_true", help="train again even if the cache holds this model")
    train.set_defaults(handler=cmd_models_train)


def cmd_models_train(args: argparse.Namespace) -> int:
    config = DynamicsConfig(num_models=args.num_models, num_elites=args.num_elites, hidden_dims=tuple(args.hidden_dims),
                            weight_decay=tuple(args.weight_decay), max_epochs=args.max_epochs, seed=args.seed,
                            terminal_head=args.terminal_head)
    config.validate()
    dataset = resolve_dataset(args.dataset, data_dir=args.data_dir)
    if config.terminal_head:
        check_terminal_rows(dataset.terminals, "--terminal-head", where=f"dataset {args.dataset}")
    low = high = None
    if dataset.metadata.action_low is None and dataset.metadata.env_id is not None:
        low, high = action_bounds(dataset.metadata.env_id)
    normalizer = fit_normalizer(dataset, False, False, low, high)

    def log(epoch, mse):
        print(f"epoch {epoch}: held-out MSE per member {np.array2string(mse, precision=4)}", flush=True)

    model, meta, reused = dataset_dynamics(dataset, normalizer, config, cache_dir=models_dir(args.data_dir),
                                           retrain=args.retrain, log=log, dataset_name=args.dataset)
    targets = np.concatenate([dataset.next_observations - dataset.observations, dataset.rewards[:, None]], 1)
    print(f"{'reused cached' if reused else 'trained'} dynamics model for {args.dataset}: {meta['epochs']} epochs, "
          f"{meta['train_seconds']:.1f} s, {meta['num_train']} training / {meta['num_holdout']} held-out transitions")
    print(f"held-out MSE per member: {np.array2string(np.asarray(meta['holdout_mse']), precision=4)}; "
          f"elites {meta['elites']}; predicting no change: {float((targets ** 2).mean()):.4f} (whole dataset)")
    terminal = meta.get("holdout_terminal")
    if terminal:
        def share(value):
            return "-" if value is None else f"{value:.3f}"

        print(f"terminal head, elites' mean: held-out recall {share(terminal['elite_recall'])} on {terminal['terminal_rows']} "
              f"terminal rows, specificity {share(terminal['elite_specificity'])} on {terminal['non_terminal_rows']} others, "
              f"precision {share(terminal.get('elite_precision'))}")
    print(f"model directory: {meta['directory']}")
    return 0
