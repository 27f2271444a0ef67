"""`offrl ope RUN_DIR` and `offrl select RUNS`: estimate and choose policies without a simulator."""

from __future__ import annotations

import argparse
import json

from offrl.errors import ConfigError
from offrl.ope.evaluate_run import METHODS, OPEConfig, evaluate_run
from offrl.ope.fqe import FQEConfig


def add_commands(commands) -> None:
    ope = commands.add_parser(
        "ope", help="offline policy evaluation of a run's checkpoints (FQE, WPDIS, DR) beside the behaviour return",
        description="Estimate the value of every checkpoint of RUN_DIR from logged data: fitted Q evaluation, "
                    "weighted per-decision IS or weighted doubly robust, each with a bootstrap interval over "
                    "episodes, and the behaviour policy's Monte-Carlo return for comparison. Uses the run's "
                    "held-out validation episodes when it has them. Values are discounted returns from the "
                    "episodes' start states.")
    ope.add_argument("run_dir", metavar="RUN_DIR")
    ope.add_argument("--dataset", default=None, help="the run's dataset (default: the one its config.json names); its fingerprint must match")
    ope.add_argument("--data-dir", default=None, help="offrl data directory (default: $OFFRL_DATA_DIR or ~/.offrl)")
    ope.add_argument("--method", default="fqe", help=f"comma-separated, from {', '.join(METHODS)} (default: fqe)")
    ope.add_argument("--checkpoints", choices=("all", "last"), default="all", help="evaluate every checkpoint or only the last (default: all)")
    ope.add_argument("--json", action="store_true", help="print one JSON object per policy (method, estimate, low, high, checkpoint_step)")
    _fqe_arguments(ope)
    ope.set_defaults(handler=cmd_ope)

    select = commands.add_parser(
        "select", help="choose a checkpoint or configuration by offline estimates (fqe, validation-td) or online returns",
        description="Rank the checkpoints of the runs under RUNS (run directories, multi-seed or sweep directories) "
                    "by one criterion and show what each other criterion would have chosen.")
    select.add_argument("runs", metavar="RUNS_OR_SWEEP", nargs="+")
    select.add_argument("--by", choices=("fqe", "validation-td", "online"), default="fqe", help="the criterion that chooses (default: fqe)")
    select.add_argument("--json", action="store_true", help="print the choice and the table as one JSON object")
    _fqe_arguments(select)
    select.set_defaults(handler=cmd_select)


def _fqe_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = FQEConfig()
    group = parser.add_argument_group("estimators")
    group.add_argument("--fqe-steps", type=int, default=defaults.steps, help=f"FQE gradient steps per policy (default: {defaults.steps})")
    group.add_argument("--fqe-hidden-dims", type=int, nargs="+", default=list(defaults.hidden_dims), metavar="N",
                       help=f"FQE network (default: {' '.join(map(str, defaults.hidden_dims))}, d3rlpy's)")
    group.add_argument("--fqe-learning-rate", type=float, default=defaults.learning_rate, help=f"(default: {defaults.learning_rate}, d3rlpy's)")
    group.add_argument("--fqe-batch-size", type=int, default=defaults.batch_size, help=f"(default: {defaults.batch_size})")
    group.add_argument("--discount", type=float, default=defaults.discount, help=f"(default: {defaults.discount})")
    group.add_argument("--bootstrap", type=int, default=defaults.num_bootstrap, help=f"FQE networks fitted on episode resamples for the interval (default: {defaults.num_bootstrap})")
    group.add_argument("--confidence", type=float, default=defaults.confidence, help=f"(default: {defaults.confidence})")
    group.add_argument("--target-noise", type=float, default=OPEConfig.target_noise, help="IS/DR: the evaluated policy's Gaussian noise std in [-1, 1] action units (default: 0.1)")
    group.add_argument("--behaviour-steps", type=int, default=OPEConfig.behaviour_steps,
                       help=f"IS/DR: gradient steps of the BC behaviour model (default: {OPEConfig.behaviour_steps})")
    group.add_argument("--seed", type=int, default=0, help="(default: 0)")


def ope_config(args: argparse.Namespace) -> OPEConfig:
    fqe = FQEConfig(steps=args.fqe_steps, hidden_dims=tuple(args.fqe_hidden_dims), learning_rate=args.fqe_learning_rate,
                    batch_size=args.fqe_batch_size, discount=args.discount, num_bootstrap=args.bootstrap,
                    confidence=args.confidence, seed=args.seed)
    fqe.validate()
    if not args.target_noise > 0:
        raise ConfigError(f"--target-noise is {args.target_noise}; expected a positive number.")
    if args.behaviour_steps <= 0:
        raise ConfigError(f"--behaviour-steps is {args.behaviour_steps}; expected a positive integer.")
    return OPEConfig(fqe=fqe, target_noise=args.target_noise, behaviour_steps=args.behaviour_steps)


def cmd_ope(args: argparse.Namespace) -> int:
    from offrl.data.registry import resolve_dataset

    methods = tuple(m.strip() for m in args.method.split(",") if m.strip())
    config = ope_config(args)
    dataset = resolve_dataset(args.dataset, data_dir=args.data_dir) if args.dataset else None
    report = evaluate_run(args.run_dir, methods, config, dataset=dataset, checkpoints=args.checkpoints)
    if args.json:
        for result in report["policies"]:
            print(json.dumps(result))
        print(json.dumps({**report["behaviour"], "checkpoint_step": None}))
        return 0
    print(f"{report['algorithm']} run {report['run_dir']}: estimates on {report['data']} (discount {config.fqe.discount})")
    for result in report["policies"]:
        note = f"  ESS {result['effective_sample_size']:.1f}" if "effective_sample_size" in result else ""
        print(f"  step {result['checkpoint_step']:>9d}  {result['method']:6s} {result['estimate']:10.2f}  "
              f"[{result['low']:.2f}, {result['high']:.2f}]{note}")
        if "warning" in result:
            print(f"    warning: {result['warning']}")
    behaviour = report["behaviour"]
    print(f"  behaviour policy (Monte-Carlo): {behaviour['estimate']:.2f} [{behaviour['low']:.2f}, {behaviour['high']:.2f}] "
          f"discounted, {behaviour['undiscounted_return']:.2f} undiscounted, over {behaviour['episodes']} episodes")
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    from offrl.ope.select import format_selection, select_policies

    selection = select_policies(args.runs, args.by, ope_config(args))
    print(json.dumps(selection) if args.json else format_selection(selection))
    return 0
