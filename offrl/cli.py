"""The `offrl` command: a thin layer over the Python API.

Flags are generated from the same dataclass configs the Python API uses, so `--help` always
lists every hyperparameter with its default. Bad input ends with one sentence on stderr and
exit code 2, a diverged training run with one sentence and exit code 3; `--debug` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import linecache
import re
import sys
import textwrap
import time
import typing
import warnings
from pathlib import Path
from typing import Any, Sequence

from offrl.errors import ConfigError, OffrlInputError

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3


# ----------------------------------------------------------------------- argparse errors
class OneSentenceParser(argparse.ArgumentParser):
    """argparse, but a command-line mistake is one sentence naming the flag or choice and what was
    expected (exit code 2 through `main`), instead of the usage block and an error line."""

    def error(self, message: str) -> typing.NoReturn:
        raise ConfigError(_usage_sentence(self.prog, message))


def _usage_sentence(prog: str, message: str) -> str:
    """argparse's error `message` as one sentence that says what `prog` expected."""
    see = f"see `{prog} --help`"
    if match := re.fullmatch(r"unrecognized arguments: (.*)", message, flags=re.DOTALL):
        unknown = match.group(1).split()
        flags = [arg for arg in unknown if arg.startswith("-")] or unknown
        return (f"Unknown {'flag' if flags[0].startswith('-') else 'argument'}{'s' if len(flags) > 1 else ''} "
                f"{', '.join(flags)}; expected only the flags the command's --help lists.")
    if match := re.fullmatch(r"argument (\S+): invalid choice: (.*?) \(choose from (.*)\)", message, flags=re.DOTALL):
        name, value, choices = match.groups()
        return f"{name} {value} is not known; expected one of {choices.replace(chr(39), '')} ({see})."
    if match := re.fullmatch(r"the following arguments are required: (.*)", message, flags=re.DOTALL):
        return f"`{prog}` is missing {match.group(1)}; expected it on the command line ({see})."
    if match := re.fullmatch(r"argument (\S+): invalid (\w+) value: (.*)", message, flags=re.DOTALL):
        flag, kind, value = match.groups()
        kind = {"int": "an integer", "float": "a number", "str": "a string", "int_or_none": "an integer or none",
                "float_or_none": "a number or none"}.get(kind, f"a value of type {kind}")
        return f"{flag} is {value}; expected {kind}."
    if match := re.fullmatch(r"argument (\S+): (expected .*)", message, flags=re.DOTALL):
        return f"{match.group(1)} is incomplete; {match.group(2)} ({see})."
    sentence = " ".join(message.split()).rstrip(".")
    return f"{sentence[:1].upper()}{sentence[1:]} ({see})."


# --------------------------------------------------------------------- dataclass -> flags
def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@functools.cache
def _field_comments(config_class: type) -> dict[str, str]:
    """The `# why` comment after each field in the dataclass source, used as its help text.

    Read from the class's lines of its module file (`inspect.getsource` parses the whole module
    for every class: seconds of start-up for the ~30 config classes the parser shows)."""
    try:
        lines = linecache.getlines(inspect.getsourcefile(config_class) or "")
    except TypeError:
        lines = []
    header = re.compile(rf"class {re.escape(config_class.__name__)}\b")
    start = next((i for i, line in enumerate(lines) if header.match(line)), None)
    if start is None:  # not a top-level class of a readable file
        try:
            source = inspect.getsource(config_class)
        except (OSError, TypeError):
            return {}
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].strip() and not lines[i][0].isspace()), len(lines))
        source = "".join(lines[start:end])
    return dict(re.findall(r"^\s+(\w+)\s*:[^#\n]*#\s*(.+)$", source, flags=re.MULTILINE))


def add_config_arguments(
    parser: argparse.ArgumentParser, config_class: type, title: str, exclude: tuple[str, ...] = ()
) -> None:
    """One flag per dataclass field, with its type, default and source comment in the help."""
    group = parser.add_argument_group(title)
    hints = typing.get_type_hints(config_class)
    comments = _field_comments(config_class)
    for field in dataclasses.fields(config_class):
        if field.name in exclude:
            continue
        annotation = hints[field.name]
        default = field.default
        kwargs: dict[str, Any] = {"dest": f"{config_class.__name__}.{field.name}", "default": argparse.SUPPRESS}
        shown = default if not isinstance(default, tuple) else " ".join(map(str, default))
        if annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
            kwargs["help"] = f"(default: {default})"
        elif typing.get_origin(annotation) is tuple:
            kwargs["type"] = typing.get_args(annotation)[0]
            kwargs["nargs"] = "+"
            kwargs["metavar"] = "N"
            kwargs["help"] = f"(default: {shown})"
        else:
            options = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
            optional = type(None) in typing.get_args(annotation) and options[0] in (int, float)
            kwargs["type"] = _or_none(options[0]) if optional else options[0]
            kwargs["metavar"] = options[0].__name__.upper()
            kwargs["help"] = f"(default: {shown})"
        if field.name in comments:
            kwargs["help"] = f"{comments[field.name]} {kwargs['help']}"
        kwargs["help"] = kwargs["help"].replace("%", "%%")  # argparse %-formats help strings
        group.add_argument(_flag(field.name), **kwargs)


def _or_none(kind: type) -> Any:
    """A flag type for an optional number field: `none` (any case) gives None."""
    def parse(text: str):
        return None if text.strip().lower() == "none" else kind(text)

    parse.__name__ = f"{kind.__name__}_or_none"  # argparse names the type in its error (_usage_sentence)
    return parse


def config_from_args(config_class: type, args: argparse.Namespace) -> Any:
    return config_class(**_given(config_class, args))


def _given(config_class: type, args: argparse.Namespace) -> dict[str, Any]:
    """The fields of `config_class` given as flags (absent flags are not in `args`)."""
    prefix = f"{config_class.__name__}."
    given = {key[len(prefix):]: value for key, value in vars(args).items() if key.startswith(prefix)}
    hints = typing.get_type_hints(config_class)
    return {name: tuple(value) if typing.get_origin(hints[name]) is tuple else value for name, value in given.items()}


# --------------------------------------------------------------------------- commands
def _resolve_dataset(name_or_path: str, data_dir: str | None, clip_actions: bool, download: bool = False):
    from offrl.data.registry import resolve_dataset

    if download:  # `--download`: fetch a public name first if it is not registered yet
        from offrl.data.download import download_if_public

        download_if_public(name_or_path, data_dir=data_dir, echo=print)
    return resolve_dataset(name_or_path, data_dir=data_dir, clip_actions=clip_actions)


def _dataset_label(dataset, argument: str) -> str:
    return dataset.metadata.name or Path(argument).stem


def _default_run_dir(*parts: str) -> Path:
    """runs/<parts>-<time>, one flat directory: a dataset name's slashes (`mujoco/hopper/medium-v0`,
    `D4RL/antmaze/umaze-v1`) and any other path separator become dashes."""
    name = "-".join([*parts, time.strftime("%Y%m%d-%H%M%S")])
    return Path("runs") / re.sub(r"[/\\:\s]+", "-", name)


def _dataset_mean_normalized_return(dataset) -> float | None:
    from offrl.evaluate.scores import normalized_score

    meta = dataset.metadata
    if meta.ref_min_score is None or meta.ref_max_score is None:
        return None
    return float(normalized_score(dataset.episode_returns(), meta.ref_min_score, meta.ref_max_score).mean())


def cmd_train(args: argparse.Namespace) -> int:
    from offrl.algos import get_algorithm
    from offrl.train.configs import validate_algorithm_config
    from offrl.train.offline import TrainConfig, train_offline

    algo = get_algorithm(args.algorithm)
    if args.resume:
        return _resume_train(args, algo)
    if not args.dataset:
        raise ConfigError("--dataset is missing; expected a dataset path or registered name (or --resume RUN_DIR).")
    algo_config = config_from_args(algo.Config, args)
    train_config = config_from_args(TrainConfig, args)
    train_config.validate()
    validate_algorithm_config(algo_config)
    if args.seeds < 1:
        raise ConfigError(f"--seeds is {args.seeds}; expected a positive number of seeds.")
    from offrl.train.presets import command as presets  # defaults < the dataset's preset < flags given

    if args.print_config:
        return presets.print_config(algo, TrainConfig, args, _given(algo.Config, args), _given(TrainConfig, args))
    dataset = _resolve_dataset(args.dataset, args.data_dir, args.clip_actions, download=args.download)
    algo_config, train_config, preset = presets.resolve(algo, TrainConfig, args.preset, args.dataset,
                                                        train_config.env_id or dataset.metadata.env_id,
                                                        _given(algo.Config, args), _given(TrainConfig, args))
    train_config.validate()
    validate_algorithm_config(algo_config)
    print(presets.describe(preset, args.dataset, args.preset))
    seed_label = f"seed{train_config.seed}" if args.seeds == 1 else f"seeds{train_config.seed}-{train_config.seed + args.seeds - 1}"
    run_dir = args.run_dir or _default_run_dir(algo.NAME, _dataset_label(dataset, args.dataset), seed_label)
    reference = {"argument": args.dataset, "name": dataset.metadata.name, "source": dataset.metadata.source,
                 "data_dir": args.data_dir, "clip_actions": args.clip_actions,
                 "preset": preset.to_json() if preset is not None else None}
    if args.seeds > 1:
        from offrl.train.multi_seed import train_seeds

        seeds = range(train_config.seed, train_config.seed + args.seeds)
        results = train_seeds(algo, algo_config, dataset, train_config, run_dir, seeds, dataset_reference=reference,
                              progress=not args.no_progress, axis=args.seed_axis)
        return _print_seed_results(run_dir, results, dataset)
    result = train_offline(algo, algo_config, dataset, train_config, run_dir, dataset_reference=reference,
                           progress=not args.no_progress)
    return _print_train_result(result, dataset)


def _print_seed_results(run_dir, results, dataset) -> int:
    """One line per seed, then mean and standard deviation of the final and best scores."""
    import numpy as np

    finished = [result.summary for result in results if result.summary.get("status") == "finished"]
    key = "normalized_score" if finished and finished[0].get("final_normalized_score") is not None else "return"
    print(f"run directory: {run_dir} ({len(results)} seeds, one program)")
    for result in results:
        summary = result.summary
        if summary.get("status") != "finished":
            print(f"  {result.run_dir.name}: {summary.get('status')} ({summary.get('error', '')})")
            continue
        print(f"  {result.run_dir.name}: final {summary[f'final_{key}']:.1f}, best {summary[f'best_{key}']:.1f}")
    if finished:
        print(f"updates/s per seed: {finished[0]['updates_per_second']:.0f} "
              f"({finished[0]['updates_per_second'] * len(results):.0f} in total), compile {finished[0]['compile_seconds']:.1f} s")
        for which in ("final", "best"):
            values = np.array([summary[f"{which}_{key}"] for summary in finished])
            label = "normalized score" if key == "normalized_score" else "return"
            print(f"{which} {label}: {values.mean():.1f} ± {values.std():.1f} over {len(values)} seeds")
        dataset_score = _dataset_mean_normalized_return(dataset)
        if key == "normalized_score" and dataset_score is not None:
            print(f"dataset mean normalized return: {dataset_score:.1f}")
    if len(finished) < len(results):
        print(f"offrl: error: {len(results) - len(finished)} of {len(results)} seeds did not finish (see their summary.json)",
              file=sys.stderr)
        return EXIT_DIVERGED
    return 0


def _resume_train(args: argparse.Namespace, algo) -> int:
    """`offrl train ALGO --resume RUN_DIR`: the recorded config; flags given must agree with it."""
    from offrl.train.offline import TrainConfig, load_recorded_dataset, recorded_run, train_offline

    if args.run_dir and Path(args.run_dir) != Path(args.resume):
        raise ConfigError(f"--run-dir {args.run_dir} and --resume {args.resume} name different runs; expected one of them.")
    seed_dirs = sorted(Path(args.resume).glob("seed_*/config.json"))
    if not (Path(args.resume) / "config.json").exists() and seed_dirs:  # a multi-seed run: resume its seeds together
        recorded_algo, algo_config, train_config, config = recorded_run(seed_dirs[0].parent)
        seeds = sorted(int(path.parent.name.removeprefix("seed_")) for path in seed_dirs)
    else:
        recorded_algo, algo_config, train_config, config = recorded_run(args.resume)
        seeds = None
    if recorded_algo.NAME != algo.NAME:
        raise ConfigError(f"Run '{args.resume}' was trained with {recorded_algo.NAME}, not {algo.NAME}; expected `offrl train {recorded_algo.NAME} --resume {args.resume}`.")
    # Flags given on the command line are applied; train_offline refuses any that change the run.
    algo_config = dataclasses.replace(algo_config, **_given(algo.Config, args))
    train_config = dataclasses.replace(train_config, **_given(TrainConfig, args))
    if args.dataset:
        dataset = _resolve_dataset(args.dataset, args.data_dir, args.clip_actions)
    else:
        dataset = load_recorded_dataset(config)
    with warnings.catch_warnings():  # a skipped damaged checkpoint: one line, not a Python warning dump
        warnings.showwarning = lambda message, *_, **__: print(f"offrl: warning: {message}", file=sys.stderr)
        if seeds is not None:
            from offrl.train.multi_seed import train_seeds

            results = train_seeds(algo, algo_config, dataset, train_config, args.resume, seeds,
                                  dataset_reference=config.get("dataset"), progress=not args.no_progress, resume=True)
            return _print_seed_results(args.resume, results, dataset)
        result = train_offline(algo, algo_config, dataset, train_config, args.resume,
                               dataset_reference=config.get("dataset"), progress=not args.no_progress, resume=True)
    return _print_train_result(result, dataset)


def _print_train_result(result, dataset) -> int:
    summary = result.summary
    print(f"run directory: {result.run_dir}")
    if summary.get("resumed_from_steps"):
        print(f"resumed from step {summary['resumed_from_steps'][-1]}")
    if summary.get("updates_per_second"):
        print(f"compile: {summary['compile_seconds']:.1f} s, training: {summary['updates_per_second']:.0f} updates/s")
    if summary.get("final_normalized_score") is not None:
        print(f"final normalized score: {summary['final_normalized_score']:.1f} (step {summary['final_step']})")
        print(f"best normalized score:  {summary['best_normalized_score']:.1f} (step {summary['best_step']})")
        dataset_score = _dataset_mean_normalized_return(dataset)
        if dataset_score is not None:
            print(f"dataset mean normalized return: {dataset_score:.1f}")
    elif summary.get("online_evaluation") is False:
        print(f"no online evaluation ({summary['evaluation']})")
    else:
        print(f"final return: {summary['final_return']:.1f}; best return: {summary['best_return']:.1f} "
              "(no reference scores in the dataset, so no normalized score)")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from offrl.evaluate.rollout import evaluate_policy
    from offrl.evaluate.scores import normalized_score
    from offrl.train.policy import load_policy
    from offrl.train.run_dir import RunDirectory

    from offrl.evaluate.safe_scores import evaluate_at_target_costs, parse_target_costs, safe_table_row

    target_costs = parse_target_costs(args.target_cost)
    run = RunDirectory(args.run_dir)
    config = run.read_config()
    policy = load_policy(args.run_dir)
    if args.obs_noise:  # RORL-style perturbed observations (offrl/evaluate/perturbation.py)
        from offrl.evaluate.perturbation import NoisyObservations

        policy = NoisyObservations(policy, args.obs_noise, seed=args.seed)
    env_id = args.env or config["env_id"]
    meta = config.get("dataset_metadata", {})
    if target_costs is None and config.get("algorithm_config", {}).get("target_cost") is not None:
        target_costs = [float(config["algorithm_config"]["target_cost"])]
    ref_min, ref_max = meta.get("ref_min_score"), meta.get("ref_max_score")
    if target_costs:  # a policy conditioned on its target (CDT) is rolled out once per κ; any other once
        evaluations = evaluate_at_target_costs(policy, env_id, target_costs, args.episodes, args.seed, ref_min, ref_max)
        records = [record for record, _ in evaluations if record is not None]
        if getattr(policy, "conditions_on_target_cost", False):
            rollouts = [(f"conditioned on target cost {k:g}", stats) for k, (_, stats) in zip(target_costs, evaluations)]
        else:
            rollouts = [(None, evaluations[0][1])]
    else:
        rollouts, records = [(None, evaluate_policy(policy, env_id, args.episodes, seed=args.seed))], []
    for heading, stats in rollouts:
        if heading:
            print(f"{heading}:")
        print(f"{env_id}: return {stats.mean_return:.1f} ± {np.std(stats.returns):.1f} over {args.episodes} episodes")
        if ref_min is not None and ref_max is not None:
            scores = normalized_score(stats.returns, ref_min, ref_max)
            print(f"normalized score: {scores.mean():.1f} ± {scores.std():.1f}")
        if stats.costs is not None:
            print(f"cost {stats.mean_cost:.1f} ± {np.std(stats.costs):.1f} per episode")
    if records:  # a constrained task (info["cost"]): DSRL's protocol at the target costs
        rows = [(f"at target cost {r['target_cost']:g}", r) for r in records]
        if len(records) > 1:
            rows.append((f"averaged over target costs {', '.join(f'{k:g}' for k in target_costs)}", safe_table_row(records)))
        for label, safe in rows:
            reward = f"normalized reward {safe['normalized_reward']:.3f}, " if "normalized_reward" in safe else ""
            print(f"{label}: {reward}normalized cost {safe['normalized_cost']:.3f} ({'safe' if safe['safe'] else 'unsafe'})")
    return 0


def cmd_datasets_info(args: argparse.Namespace) -> int:
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    dataset = _resolve_dataset(args.dataset, args.data_dir, clip_actions=False)
    meta = dataset.metadata
    returns = dataset.episode_returns()
    table = Table(title=str(meta.name or meta.source), show_header=False)
    rows = [
        ("source", meta.source),
        ("env id", meta.env_id),
        ("transitions", dataset.num_transitions),
        ("episodes", dataset.num_episodes),
        ("observation dim", dataset.spec.observation_dim),
        ("action dim", dataset.spec.action_dim),
        ("action bounds", None if meta.action_low is None else f"[{np.min(meta.action_low):g}, {np.max(meta.action_high):g}]"),
        ("terminals", int(dataset.terminals.sum())),
        ("timeouts", int(dataset.timeouts.sum())),
        ("episode length", f"min {dataset.episode_lengths.min()}, mean {dataset.episode_lengths.mean():.1f}, max {dataset.episode_lengths.max()}"),
        ("episode return", f"min {returns.min():.1f}, mean {returns.mean():.1f}, max {returns.max():.1f}, std {returns.std():.1f}"),
        ("ref_min_score", meta.ref_min_score),
        ("ref_max_score", meta.ref_max_score),
    ]
    normalized = _dataset_mean_normalized_return(dataset)
    if normalized is not None:
        rows.append(("mean normalized return", f"{normalized:.1f}"))
    costs = dataset.episode_costs()  # safe offline RL (DSRL): cost statistics when the data has costs
    if costs is not None:
        rows += [("total cost", f"{dataset.costs.sum(dtype=np.float64):g}"),
                 ("episode cost", f"min {costs.min():.1f}, mean {costs.mean():.1f}, max {costs.max():.1f}")]
    for key, value in rows:
        table.add_row(key, "-" if value is None else str(value))
    Console().print(table)
    return 0


def cmd_datasets_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from offrl.data.registry import list_datasets

    entries = list_datasets(args.data_dir)
    columns = ("name", "env_id", "transitions", "episodes", "mean_return", "ref_min_score", "ref_max_score")
    headers = ("name", "env", "transitions", "episodes", "mean return", "ref min", "ref max")
    rows = [["-" if entry.get(c) is None else (f"{entry[c]:.1f}" if isinstance(entry[c], float) else str(entry[c]))
             for c in columns] for entry in entries]
    widths = [max([len(header)] + [len(row[i]) for row in rows]) for i, header in enumerate(headers)]
    table = Table(title="datasets")
    for index, header in enumerate(headers):
        table.add_column(header, no_wrap=True, min_width=widths[index], justify="left" if index < 2 else "right")
    for row in rows:
        table.add_row(*row)
    # Names are what users type next and numbers are read whole: widen past a narrow terminal
    # rather than cut a cell short.
    Console(width=max(Console().width, sum(widths) + 3 * len(widths) + 1)).print(table)
    return 0


def cmd_datasets_import(args: argparse.Namespace) -> int:
    from offrl.data.registry import import_dataset

    path = import_dataset(args.file, args.name, data_dir=args.data_dir, overwrite=args.overwrite)
    print(f"imported {args.file} as {args.name}: {path}")
    return 0


def cmd_datasets_make(args: argparse.Namespace) -> int:
    if args.safe:
        return _make_safe(args)
    for flag, value in (("--cost-limits", args.cost_limits), ("--snapshots-per-agent", args.snapshots_per_agent),
                        ("--snapshot-span", args.snapshot_span)):
        if value is not None:
            raise ConfigError(f"{flag} applies to safe datasets; expected --safe with it.")
    from offrl.suites import make_suite

    levels = [level.strip() for level in (args.levels or ",".join(MAKE_LEVEL_NAMES)).split(",") if level.strip()]
    paths = make_suite(args.env_id, levels, budget=args.budget, size=args.size, seed=args.seed,
                       data_dir=args.data_dir, overwrite=args.overwrite, progress=not args.no_progress)
    for level, path in paths.items():
        print(f"{level}: {path}")
    return 0


def _make_safe(args: argparse.Namespace) -> int:
    from offrl.evaluate.safe_scores import parse_target_costs
    from offrl.suites import make_safe_dataset

    if args.levels is not None:
        raise ConfigError("--levels names D4RL levels; expected no --levels with --safe, which writes one mixed dataset.")
    cost_limits = parse_target_costs(args.cost_limits, flag="--cost-limits")
    from offrl.suites.safe_recipe import SNAPSHOT_SPANS, SNAPSHOTS_PER_AGENT

    span = SNAPSHOT_SPANS[0] if args.snapshot_span is None else args.snapshot_span
    snapshots = SNAPSHOTS_PER_AGENT if args.snapshots_per_agent is None else args.snapshots_per_agent
    path = make_safe_dataset(args.env_id, budget=args.budget, size=args.size, cost_limits=cost_limits, seed=args.seed,
                             data_dir=args.data_dir, overwrite=args.overwrite, progress=not args.no_progress,
                             snapshots_per_agent=snapshots, snapshot_span=span)
    print(f"safe: {path}")
    return 0


def cmd_algos(args: argparse.Namespace) -> int:
    from offrl.algos import ALGORITHMS, ONLINE_ALGORITHMS

    for name, module in sorted({**ALGORITHMS, **ONLINE_ALGORITHMS}.items()):
        print(f"{name:10s} {module.DESCRIPTION}\n{'':10s} {module.PAPER}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from offrl.report import write_report

    for path in write_report(args.results_dir, out=args.out, formats=args.format, reps=args.bootstrap, seed=args.seed,
                             bands=args.bands, band_tolerance=args.band_tolerance):
        print(path)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from offrl.report import compare_runs, format_comparison

    print(format_comparison(compare_runs(args.run_a, args.run_b, reps=args.bootstrap, seed=args.seed)))
    return 0


# ------------------------------------------------------------------ offline-to-online
def cmd_finetune(args: argparse.Namespace) -> int:
    """`offrl finetune OFFLINE_RUN`: continue an offline run online (offrl.train.finetune)."""
    from offrl.train.finetune import FinetuneConfig, finetune, resume_finetune

    dataset = _resolve_dataset(args.dataset, args.data_dir, args.clip_actions) if args.dataset else None
    if args.resume:
        if not args.run_dir:
            raise ConfigError("--resume needs --run-dir OUT, the fine-tuning run to continue.")
        return _print_finetune_result(resume_finetune(args.run_dir, dataset=dataset, progress=not args.no_progress))
    config = config_from_args(FinetuneConfig, args)
    config.validate()
    run_dir = args.run_dir or _default_run_dir("finetune", Path(args.offline_run).resolve().name, f"seed{config.seed}")
    return _print_finetune_result(finetune(args.offline_run, config, run_dir, dataset=dataset, progress=not args.no_progress))


def cmd_train_online(args: argparse.Namespace) -> int:
    """`offrl train rlpd`: an online algorithm from scratch, with the dataset as prior data."""
    from offrl.algos import get_algorithm
    from offrl.train.finetune import FinetuneConfig, resume_finetune, train_with_prior_data

    algo = get_algorithm(args.algorithm)
    if args.resume:
        return _print_finetune_result(resume_finetune(args.resume, progress=not args.no_progress))
    if not args.dataset:
        raise ConfigError("--dataset is missing; expected a dataset path or registered name (or --resume RUN_DIR).")
    algo_config = config_from_args(algo.Config, args)
    config = config_from_args(FinetuneConfig, args)
    config.validate()
    dataset = _resolve_dataset(args.dataset, args.data_dir, args.clip_actions)
    run_dir = args.run_dir or _default_run_dir(algo.NAME, _dataset_label(dataset, args.dataset), f"seed{config.seed}")
    reference = {"argument": args.dataset, "name": dataset.metadata.name, "source": dataset.metadata.source,
                 "data_dir": args.data_dir, "clip_actions": args.clip_actions}
    return _print_finetune_result(train_with_prior_data(algo, algo_config, dataset, config, run_dir,
                                                        dataset_reference=reference, progress=not args.no_progress))


def _print_finetune_result(result) -> int:
    summary = result.summary
    print(f"run directory: {result.run_dir}")
    if summary.get("score_before") is not None:
        print(f"normalized score: {summary['score_before']:.1f} before -> {summary['score_after']:.1f} after "
              f"{summary['online_steps']} online steps (best {summary['best_score']:.1f} at step {summary['best_step']})")
        regrets = [f"{summary[key]:.3f} ({what})" for key, what in (("regret", "evaluations"), ("train_regret", "training episodes"))
                   if summary.get(key) is not None]
        print(f"regret: {', '.join(regrets) or '-'}")
    else:
        print(f"return: {summary['return_before']:.1f} before -> {summary['return_after']:.1f} after "
              f"{summary['online_steps']} online steps (no reference scores in the dataset)")
    print(f"wall time: {summary['wall_seconds']:.0f} s (compile {summary['compile_seconds']:.1f} s)")
    return 0


def add_finetune_parsers(commands, algorithms) -> None:
    """`offrl finetune` and `offrl train ONLINE_ALGO` (flags from FinetuneConfig and the algorithm's Config)."""
    from offrl.algos import ONLINE_ALGORITHMS
    from offrl.train.finetune import FinetuneConfig

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--run-dir", default=None, help="where to write the run (default: runs/...)")
        sub.add_argument("--no-progress", action="store_true", help="no progress bar")
        sub.add_argument("--env", dest="FinetuneConfig.env_id", default=argparse.SUPPRESS, metavar="ENV_ID",
                         help="environment to interact with and evaluate in (default: the run's or dataset's env id)")
        add_config_arguments(sub, FinetuneConfig, "online training", exclude=("env_id",))

    finetune = commands.add_parser("finetune", help="fine-tune an offline run online (mixed or WSRL batches)",
                                   description="Continue an offline run online: collect with its policy, mix online "
                                               "and offline data in each batch, evaluate periodically.")
    finetune.add_argument("offline_run", metavar="RUN_DIR", help="the offline run directory to start from")
    finetune.add_argument("--resume", action="store_true", help="continue the fine-tuning run in --run-dir from its latest checkpoint")
    finetune.add_argument("--dataset", default=None, help="the offline run's dataset (default: the one its config.json names)")
    finetune.add_argument("--data-dir", default=None, help="offrl data directory (default: $OFFRL_DATA_DIR or ~/.offrl)")
    finetune.add_argument("--clip-actions", action="store_true", help="clip dataset actions into the action space instead of refusing them")
    common(finetune)
    finetune.set_defaults(handler=cmd_finetune)

    for name, module in sorted(ONLINE_ALGORITHMS.items()):
        sub = algorithms.add_parser(name, help=module.DESCRIPTION.replace("%", "%%"), description=f"{module.DESCRIPTION} ({module.PAPER})")
        sub.add_argument("--dataset", default=None, help="prior data: dataset path or registered name (required unless --resume)")
        sub.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue the run in RUN_DIR from its latest valid checkpoint")
        sub.add_argument("--data-dir", default=None, help="offrl data directory (default: $OFFRL_DATA_DIR or ~/.offrl)")
        sub.add_argument("--clip-actions", action="store_true", help="clip dataset actions into the action space instead of refusing them")
        common(sub)
        add_config_arguments(sub, module.Config, f"{name} hyperparameters")
        sub.set_defaults(handler=cmd_train_online)


# ----------------------------------------------------------------------------- parser
# `offrl datasets make --help`: D4RL's levels as offrl.suites.d4rl_recipe records them (kept here so
# that --help does not import the suite machinery; a test checks both name the same levels).
MAKE_DESCRIPTION = ("Generate a D4RL-style dataset suite for a Gymnasium env (D4RL's recipe, Fu et al. 2020): "
                    "train SAC online for --budget steps, evaluating snapshots, then record each level with "
                    "--size transitions and register it as a Minari dataset in the data directory. Reference "
                    "scores: the random policy's return (min) and the expert's (max). With --safe, for an env that "
                    "reports info['cost']: one DSRL-style dataset with per-step costs instead, recorded from an "
                    "unconstrained SAC agent and SAC-Lag agents at --cost-limits (offrl.suites.safe_recipe).")
MAKE_LEVELS_MEANING = {
    "random": "uniform random actions",
    "medium": "the SAC snapshot whose return is closest to 0.4 of the way from random to the final agent",
    "medium-replay": "the replay buffer up to the medium snapshot, in collection order",
    "expert": "the final SAC agent's stochastic policy",
    "medium-expert": "medium followed by expert (2 x size transitions)",
}
MAKE_LEVEL_NAMES = tuple(MAKE_LEVELS_MEANING)
MAKE_LEVELS = "levels:\n" + "\n".join(textwrap.fill(meaning, 78, initial_indent=f"  {name:15s}", subsequent_indent=" " * 17)
                                      for name, meaning in MAKE_LEVELS_MEANING.items())


def build_parser() -> argparse.ArgumentParser:
    from offrl.algos import ALGORITHMS, ONLINE_ALGORITHMS
    from offrl.train.offline import TrainConfig
    from offrl.train.presets.command import add_train_arguments as add_preset_arguments

    parser = OneSentenceParser(prog="offrl", description="Offline reinforcement learning: train, evaluate, inspect datasets.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train an offline RL algorithm on a dataset")
    algorithms = train.add_subparsers(dest="algorithm", required=True, metavar="ALGO",
                                      help=f"one of: {', '.join(sorted({*ALGORITHMS, *ONLINE_ALGORITHMS}))}")
    for name, module in sorted(ALGORITHMS.items()):
        sub = algorithms.add_parser(name, help=module.DESCRIPTION.replace("%", "%%"), description=f"{module.DESCRIPTION} ({module.PAPER})")
        sub.add_argument("--dataset", default=None, help="dataset path (Minari dir, D4RL .hdf5, .npz) or registered name, e.g. 'default' (required unless --resume)")
        sub.add_argument("--resume", default=None, metavar="RUN_DIR",
                         help="continue the run in RUN_DIR from its latest valid checkpoint, with its recorded configuration and dataset")
        sub.add_argument("--run-dir", default=None, help="where to write the run (default: runs/ALGO-DATASET-seedS-TIME)")
        sub.add_argument("--data-dir", default=None, help="offrl data directory (default: $OFFRL_DATA_DIR or ~/.offrl)")
        sub.add_argument("--clip-actions", action="store_true", help="clip dataset actions into the action space instead of refusing them")
        sub.add_argument("--download", action="store_true", help="download a public --dataset (d4rl/..., Minari id) first if it is not in the data directory")
        sub.add_argument("--no-progress", action="store_true", help="no progress bar")
        sub.add_argument("--seeds", type=int, default=1, metavar="N",
                         help="train N seeds (--seed .. --seed+N-1) in one compiled program, each in RUN_DIR/seed_<s> (default 1)")
        sub.add_argument("--seed-axis", default="auto", choices=("auto", "vmap", "map"),
                         help="how the seeds share the program: vmap (batched; GPU default) or map (one after another; CPU default)")
        sub.add_argument("--env", dest="TrainConfig.env_id", default=argparse.SUPPRESS, metavar="ENV_ID",
                         help="evaluation environment (default: the dataset's env id)")
        add_preset_arguments(sub)  # --preset, --print-config
        add_config_arguments(sub, TrainConfig, "training", exclude=("env_id",))
        add_config_arguments(sub, module.Config, f"{name} hyperparameters")
        sub.set_defaults(handler=cmd_train)
    add_finetune_parsers(commands, algorithms)

    evaluate = commands.add_parser("evaluate", help="evaluate a run's final policy")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--episodes", type=int, default=10)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--env", default=None, help="environment id (default: the run's)")
    evaluate.add_argument("--obs-noise", type=float, default=0.0, metavar="EPS",
                          help="perturb each observation the policy sees by U(-EPS, EPS) noise (RORL's random attack; default 0)")
    evaluate.add_argument("--target-cost", default=None, metavar="K[,K...]",
                          help="constrained tasks: DSRL's normalised reward and cost at these cost thresholds, and their "
                               "average as OSRL's tables report it (default: the run's target_cost, if any); a policy "
                               "conditioned on its target cost (CDT) is rolled out once per threshold, conditioned on it")
    evaluate.set_defaults(handler=cmd_evaluate)

    datasets = commands.add_parser("datasets", help="inspect, list, import and make datasets")
    dataset_commands = datasets.add_subparsers(dest="datasets_command", required=True, metavar="SUBCOMMAND")
    info = dataset_commands.add_parser("info", help="sizes, returns, reference scores, terminals vs timeouts")
    info.add_argument("dataset", help="dataset path or registered name")
    info.set_defaults(handler=cmd_datasets_info)
    listing = dataset_commands.add_parser("list", help="datasets available locally")
    listing.set_defaults(handler=cmd_datasets_list)
    importing = dataset_commands.add_parser("import", help="register a D4RL .hdf5, .npz, Minari directory or .csv/.parquet logs under a name")
    importing.add_argument("file")
    importing.add_argument("--name", default=None, help="registered name (default: the file's name without extension)")
    importing.add_argument("--overwrite", action="store_true")
    importing.set_defaults(handler=cmd_datasets_import)
    from offrl.data.import_command import configure_import  # tabular logs: column flags / --mapping

    configure_import(importing)
    make = dataset_commands.add_parser(
        "make", help="generate a D4RL-style suite for a Gymnasium env", description=textwrap.fill(MAKE_DESCRIPTION, 78),
        epilog=MAKE_LEVELS, formatter_class=argparse.RawDescriptionHelpFormatter)
    make.add_argument("env_id", help="a Gymnasium env id with a Box action space, e.g. Hopper-v5")
    make.add_argument("--levels", default=None,
                      help=f"comma-separated levels to write, from those below (default: {','.join(MAKE_LEVEL_NAMES)})")
    make.add_argument("--safe", action="store_true",
                      help="instead of D4RL's levels, one DSRL-style dataset with per-step costs for an env that reports "
                           "info['cost']: an unconstrained SAC agent and SAC-Lag agents at --cost-limits, mixed (default: off)")
    make.add_argument("--cost-limits", default=None, metavar="K[,K...]",
                      help="with --safe: the SAC-Lag agents' episode cost limits (default: 0.1, 0.25, 0.5 and 0.75 of "
                           "the unconstrained agent's episode cost)")
    make.add_argument("--snapshots-per-agent", type=int, default=None, metavar="S",
                      help="with --safe: snapshots recorded per agent, the final one included (default: 2)")
    make.add_argument("--snapshot-span", default=None, choices=["second-half", "whole"],
                      help="with --safe: where the recorded snapshots lie: evenly over the second half of training, or "
                           "over the whole of it, early cheap-and-poor policies included (default: second-half)")
    make.add_argument("--budget", type=int, default=1_000_000,
                      help="each behaviour agent's (SAC's, SAC-Lag's) online environment steps (default: 1000000)")
    make.add_argument("--size", type=int, default=1_000_000,
                      help="transitions per level; medium-expert has twice as many; with --safe, of the whole mixed "
                           "dataset (default: 1000000)")
    make.add_argument("--seed", type=int, default=0, help="seed of training and recording (default: 0)")
    make.add_argument("--overwrite", action="store_true", help="replace levels that already exist (default: skip them)")
    make.add_argument("--no-progress", action="store_true", help="no progress bar (default: shown on a terminal)")
    make.set_defaults(handler=cmd_datasets_make)
    for sub in (info, listing, importing, make):
        sub.add_argument("--data-dir", default=None, help="offrl data directory (default: $OFFRL_DATA_DIR or ~/.offrl)")
    from offrl.data.tool_commands import add_dataset_tool_commands  # `offrl datasets corrupt|label`

    add_dataset_tool_commands(dataset_commands)
    from offrl.data.download_command import add_download_command  # `offrl datasets download NAME`

    add_download_command(dataset_commands)
    from offrl.suites.augment_command import add_augment_command  # `offrl datasets augment NAME --method synther`

    add_augment_command(dataset_commands)

    algos = commands.add_parser("algos", help="list algorithms with their papers")
    algos.set_defaults(handler=cmd_algos)
    from offrl.train.presets.command import add_command as add_presets_command  # `offrl presets ALGO`

    add_presets_command(commands)

    report = commands.add_parser("report", help="Markdown + HTML report (tables, IQM with CIs, plots) of the runs under a directory")
    report.add_argument("results_dir", help="directory holding run directories at any depth")
    report.add_argument("--out", default=None, help="where to write report.md, report.html and figures (default: RESULTS_DIR)")
    report.add_argument("--format", default="md,html", help="comma-separated: md, html (default: md,html)")
    report.add_argument("--bands", default="corl-gym", help="published results beside D4RL cells: a shipped table "
                        "(corl-gym), a JSON file of that layout, or 'none' (default: corl-gym)")
    report.add_argument("--band-tolerance", type=float, default=0.0,
                        help="a cell is reproduced within max(2 published std, this many points) (default: 0)")
    compare = commands.add_parser("compare", help="which of two run sets is better, and how sure we can be")
    compare.add_argument("run_a", help="run directory, multi-seed directory (seed_*/) or results directory")
    compare.add_argument("run_b", help="the same for the other side")
    for sub in (report, compare):
        sub.add_argument("--bootstrap", type=int, default=2000, help="bootstrap replicates (default: 2000)")
        sub.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default: 0)")
    report.set_defaults(handler=cmd_report)
    compare.set_defaults(handler=cmd_compare)

    from offrl.sweep.commands import add_commands as add_sweep_commands  # `offrl sweep`, `offrl bench`

    add_sweep_commands(commands)
    from offrl.sweep.reproduce import add_command as add_reproduce_command  # `offrl reproduce TABLE`

    add_reproduce_command(commands)
    from offrl.bench.command import add_command as add_speed_command  # `offrl bench-speed`

    add_speed_command(commands)
    from offrl.ope.command import add_commands as add_ope_commands  # `offrl ope`, `offrl select`

    add_ope_commands(commands)
    from offrl.export.command import add_command as add_export_command  # `offrl export`

    add_export_command(commands)
    from offrl.train.models_command import add_command as add_models_command  # `offrl models train`

    add_models_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line, not only before the command
    argv = [arg for arg in argv if arg != "--debug"]
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        return args.handler(args)
    except (OffrlInputError, ConfigError) as error:
        if debug:
            raise
        print(f"offrl: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as error:
        from offrl.train.offline import DivergenceError

        if debug or not isinstance(error, DivergenceError):
            raise
        print(f"offrl: error: {error}", file=sys.stderr)
        return EXIT_DIVERGED
    except KeyboardInterrupt:
        print("offrl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
