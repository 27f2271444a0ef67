"""Sweep specifications: a YAML file -> a validated `SweepSpec` -> a list of trials.

A trial is one (algorithm, dataset, hyperparameter values) trained with every seed of the
spec. The spec's hash covers everything that changes results (all keys but `name`, with
relative dataset paths made absolute and defaults filled in), so a sweep directory never mixes
trials from two different specs. Trial ids hash the trial's full resolved configuration, so
they are the same on every rerun of the same spec (and differ if offrl's defaults change).

Spec keys (see examples/sweep.yaml):
  name        label, default: the spec file's stem
  algorithms  list of algorithm names (`offrl algos`)
  datasets    list of dataset arguments (registered names, `default`, or paths; a relative path
              is read relative to the spec file's directory)
  seeds       list of distinct non-negative integers, or N for seeds 0..N-1
  train       TrainConfig fields except `seed` (steps, eval_every, eval_episodes, ...)
  config      {algorithm: {field: value}} fixed hyperparameters
  grid        {algorithm: {field: [values]}} values to search over
  search      {kind: grid} (default) or {kind: random, trials: N, seed: S, space: {algorithm:
              {field: {choice|uniform|log_uniform|int_uniform: [...]}}}}; with random search the
              `grid` lists are sampled as choices
  selection   {criterion: validation (default) | last_evals, episodes: N, last: K}
  data_dir    offrl data directory for registered dataset names
  clip_actions  clip dataset actions into the action space (default false)
  presets     true: each (algorithm, dataset) starts from the reference's per-dataset preset
              (offrl/train/presets; public dataset names only), under `config`/`grid` and the
              `train` keys the spec gives (default false)
  budget_scale  multiply every trial's steps, eval_every and checkpoint_every by this (0 < x <= 1;
              default 1): a cheaper version of a reference budget, recorded in every trial
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import math
import re
import typing
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from offrl.errors import ConfigError

TOP_LEVEL_KEYS = ("name", "algorithms", "datasets", "seeds", "train", "config", "grid", "search", "selection",
                  "data_dir", "clip_actions", "presets", "budget_scale")
SEARCH_KINDS = ("grid", "random")
DISTRIBUTIONS = ("choice", "uniform", "log_uniform", "int_uniform")
CRITERIA = ("validation", "last_evals")
DEFAULT_VALIDATION_EPISODES = 10  # as many episodes as the D4RL protocol's test evaluation
DEFAULT_LAST_EVALS = 3


@dataclass(frozen=True)
class SweepSpec:
    """A validated, normalised spec. `values` is what is hashed and stored in sweep.json."""

    where: str  # the spec file (or "spec") named in error messages
    name: str
    values: dict[str, Any] = field(repr=False)

    @property
    def algorithms(self) -> list[str]:
        return self.values["algorithms"]

    @property
    def datasets(self) -> list[str]:
        return self.values["datasets"]

    @property
    def seeds(self) -> list[int]:
        return self.values["seeds"]

    @property
    def selection(self) -> dict[str, Any]:
        return self.values["selection"]

    @property
    def hash(self) -> str:
        return spec_hash(self.values)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, **copy.deepcopy(self.values)}

    def trials(self) -> list[dict[str, Any]]:
        """Every trial of the sweep, in a fixed order (algorithm, dataset, then search order)."""
        return expand_trials(self)


def spec_hash(values: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical(values).encode()).hexdigest()[:16]


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# ------------------------------------------------------------------------------ loading
def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a YAML sweep spec; ConfigError naming the file and key on bad input."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Sweep spec '{path}' does not exist; expected a YAML file.")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"Sweep spec '{path}' is not valid YAML{where} ({problem}); expected a YAML mapping.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"Sweep spec '{path}' is not a text file; expected a YAML mapping.") from None
    return parse_spec(raw, where=str(path), base_dir=path.parent, default_name=path.stem)


def parse_spec(raw: Any, where: str = "spec", base_dir: str | Path | None = None, default_name: str = "sweep") -> SweepSpec:
    """Validate a spec given as a dict (what the YAML file holds)."""
    from offrl.algos import ALGORITHMS

    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: the spec is {_kind(raw)}; expected a mapping with keys such as algorithms, datasets, seeds.")
    _check_keys(raw, TOP_LEVEL_KEYS, where, "the top level")
    for key in ("algorithms", "datasets"):
        if key not in raw:
            raise ConfigError(f"{where}: key '{key}' is missing; expected a list of {key}.")

    name = raw.get("name", default_name)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", name):
        raise ConfigError(f"{where}: 'name' is {name!r}; expected letters, digits, '.', '_' or '-' (it names the sweep directory).")

    algorithms = _string_list(raw["algorithms"], where, "algorithms")
    for index, algorithm in enumerate(algorithms):
        if algorithm.lower() not in ALGORITHMS:
            raise ConfigError(f"{where}: algorithms[{index}] is {algorithm!r}, an unknown algorithm; "
                              f"expected one of: {', '.join(sorted(ALGORITHMS))}.")
    algorithms = [algorithm.lower() for algorithm in algorithms]
    _no_duplicates(algorithms, where, "algorithms")

    datasets = [_dataset_argument(argument, base_dir) for argument in _string_list(raw["datasets"], where, "datasets")]
    _no_duplicates(datasets, where, "datasets")

    values: dict[str, Any] = {
        "algorithms": algorithms,
        "datasets": datasets,
        "seeds": _seeds(raw.get("seeds", [0]), where),
        "train": _train(raw.get("train", {}), where),
        "config": {},
        "grid": {},
        "search": {},
        "selection": {},
        "data_dir": _optional_string(raw.get("data_dir"), where, "data_dir"),
        "clip_actions": _boolean(raw.get("clip_actions", False), where, "clip_actions"),
    }
    values["config"] = _per_algorithm(raw.get("config", {}), algorithms, where, "config", _fixed_value)
    values["grid"] = _per_algorithm(raw.get("grid", {}), algorithms, where, "grid", _grid_values)
    values["search"] = _search(raw.get("search", {"kind": "grid"}), algorithms, where)
    values["selection"] = _selection(raw.get("selection", {}), where)
    # Added only when used, so that the hashes (and directories) of specs without them stay as they were.
    if _boolean(raw.get("presets", False), where, "presets"):
        values["presets"] = True
        values["train_given"] = sorted(raw.get("train", {}))  # these keep the spec's value over a preset's
    scale = raw.get("budget_scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 1:
        raise ConfigError(f"{where}: 'budget_scale' is {scale!r}; expected a number in (0, 1].")
    if scale != 1:
        values["budget_scale"] = float(scale)
    for algorithm in algorithms:  # one hyperparameter, one place
        places = [("config", values["config"].get(algorithm, {})), ("grid", values["grid"].get(algorithm, {})),
                  ("search.space", values["search"].get("space", {}).get(algorithm, {}))]
        for (first, a), (second, b) in itertools.combinations(places, 2):
            for name in sorted(set(a) & set(b)):
                raise ConfigError(f"{where}: '{first}.{algorithm}.{name}' and '{second}.{algorithm}.{name}' both set "
                                  f"{name}; expected it in one of them.")
    return SweepSpec(where=where, name=name, values=values)


def _dataset_argument(argument: str, base_dir: str | Path | None) -> str:
    """A relative path that exists next to the spec file becomes absolute; names stay names."""
    if base_dir is not None and not Path(argument).expanduser().is_absolute():
        candidate = Path(base_dir) / Path(argument).expanduser()
        if candidate.exists():
            return str(candidate.resolve())
    path = Path(argument).expanduser()
    return str(path.resolve()) if path.exists() else argument


# ---------------------------------------------------------------------------- sections
def _train(raw: Any, where: str) -> dict[str, Any]:
    from offrl.train.offline import TrainConfig

    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: 'train' is {_kind(raw)}; expected a mapping of training settings such as steps.")
    if "seed" in raw:
        raise ConfigError(f"{where}: 'train.seed' is not allowed; expected the seeds in the top-level 'seeds' list.")
    names = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "seed"]
    _check_keys(raw, names, where, "'train'")
    hints = typing.get_type_hints(TrainConfig)
    given = {key: _typed(value, hints[key], where, f"train.{key}") for key, value in raw.items()}
    train = TrainConfig(**given)
    try:
        train.validate()
    except ConfigError as error:  # "--steps is 0; ..." -> "spec.yaml: train: --steps is 0; ..."
        raise ConfigError(f"{where}: train: {error}") from None
    values = {f.name: getattr(train, f.name) for f in dataclasses.fields(TrainConfig) if f.name != "seed"}
    return values


def _seeds(raw: Any, where: str) -> list[int]:
    if _is_int(raw):
        if raw < 1:
            raise ConfigError(f"{where}: 'seeds' is {raw}; expected a positive count or a list of seeds.")
        return list(range(raw))
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{where}: 'seeds' is {_kind(raw)}; expected a count or a non-empty list of seeds.")
    for index, seed in enumerate(raw):
        if not _is_int(seed) or seed < 0:
            raise ConfigError(f"{where}: seeds[{index}] is {seed!r}; expected a non-negative integer.")
    _no_duplicates(raw, where, "seeds")
    return [int(seed) for seed in raw]


def _per_algorithm(raw: Any, algorithms: list[str], where: str, key: str, convert) -> dict[str, dict[str, Any]]:
    from offrl.algos import get_algorithm

    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: '{key}' is {_kind(raw)}; expected a mapping from algorithm name to hyperparameters.")
    result: dict[str, dict[str, Any]] = {}
    for algorithm, fields in raw.items():
        if not isinstance(algorithm, str) or algorithm.lower() not in algorithms:
            raise ConfigError(f"{where}: '{key}.{algorithm}' names an algorithm that is not in 'algorithms'; "
                              f"expected one of: {', '.join(algorithms)}.")
        name = algorithm.lower()
        if not isinstance(fields, dict):
            raise ConfigError(f"{where}: '{key}.{algorithm}' is {_kind(fields)}; expected a mapping of hyperparameter names.")
        config_class = get_algorithm(name).Config
        hints = typing.get_type_hints(config_class)
        _check_keys(fields, list(hints), where, f"'{key}.{algorithm}'", what="hyperparameter")
        result[name] = {field_name: convert(value, hints[field_name], where, f"{key}.{algorithm}.{field_name}")
                        for field_name, value in fields.items()}
    return result


def _fixed_value(value: Any, annotation: Any, where: str, key: str) -> Any:
    return _json_value(_typed(value, annotation, where, key))


def _grid_values(values: Any, annotation: Any, where: str, key: str) -> list[Any]:
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}: '{key}' is {_kind(values)}; expected a non-empty list of values to try.")
    converted = [_json_value(_typed(value, annotation, where, f"{key}[{index}]")) for index, value in enumerate(values)]
    _no_duplicates(converted, where, key)
    return converted


def _search(raw: Any, algorithms: list[str], where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: 'search' is {_kind(raw)}; expected a mapping such as {{kind: grid}}.")
    kind = raw.get("kind", "grid")
    if kind not in SEARCH_KINDS:
        raise ConfigError(f"{where}: 'search.kind' is {kind!r}; expected one of: {', '.join(SEARCH_KINDS)}.")
    if kind == "grid":
        _check_keys(raw, ("kind",), where, "'search' (kind grid)")
        return {"kind": "grid"}
    _check_keys(raw, ("kind", "trials", "seed", "space"), where, "'search' (kind random)")
    trials, seed = raw.get("trials"), raw.get("seed", 0)
    if not _is_int(trials) or trials < 1:
        raise ConfigError(f"{where}: 'search.trials' is {trials!r}; expected a positive number of configurations per algorithm.")
    if not _is_int(seed) or seed < 0:
        raise ConfigError(f"{where}: 'search.seed' is {seed!r}; expected a non-negative integer.")
    space = _per_algorithm(raw.get("space", {}), algorithms, where, "search.space", _distribution)
    return {"kind": "random", "trials": int(trials), "seed": int(seed), "space": space}


def _distribution(raw: Any, annotation: Any, where: str, key: str) -> dict[str, Any]:
    if not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) not in DISTRIBUTIONS:
        raise ConfigError(f"{where}: '{key}' is {raw!r}; expected one of {{choice: [values]}}, {{uniform: [low, high]}}, "
                          "{log_uniform: [low, high]} or {int_uniform: [low, high]}.")
    kind, values = next(iter(raw.items()))
    if kind == "choice":
        return {"choice": _grid_values(values, annotation, where, f"{key}.choice")}
    base = _base_type(annotation)
    if kind in ("uniform", "log_uniform") and base is not float:
        raise ConfigError(f"{where}: '{key}' draws from {kind}, but the hyperparameter is {_type_name(annotation)}; "
                          "expected a float hyperparameter (use choice or int_uniform otherwise).")
    if kind == "int_uniform" and base is not int:
        raise ConfigError(f"{where}: '{key}' draws from int_uniform, but the hyperparameter is {_type_name(annotation)}; "
                          "expected an integer hyperparameter.")
    if not isinstance(values, list) or len(values) != 2:
        raise ConfigError(f"{where}: '{key}.{kind}' is {values!r}; expected [low, high].")
    low, high = (_typed(value, base, where, f"{key}.{kind}[{index}]") for index, value in enumerate(values))
    if not low < high:
        raise ConfigError(f"{where}: '{key}.{kind}' is [{low}, {high}]; expected low < high.")
    if kind == "log_uniform" and low <= 0:
        raise ConfigError(f"{where}: '{key}.log_uniform' starts at {low}; expected a positive low bound.")
    return {kind: [low, high]}


def _selection(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: 'selection' is {_kind(raw)}; expected a mapping such as {{criterion: validation}}.")
    criterion = raw.get("criterion", "validation")
    if criterion not in CRITERIA:
        raise ConfigError(f"{where}: 'selection.criterion' is {criterion!r}; expected one of: {', '.join(CRITERIA)}.")
    if criterion == "validation":
        _check_keys(raw, ("criterion", "episodes"), where, "'selection' (criterion validation)")
        episodes = raw.get("episodes", DEFAULT_VALIDATION_EPISODES)
        if not _is_int(episodes) or not 1 <= episodes <= 1000:
            raise ConfigError(f"{where}: 'selection.episodes' is {episodes!r}; expected an integer from 1 to 1000.")
        return {"criterion": "validation", "episodes": int(episodes)}
    _check_keys(raw, ("criterion", "last"), where, "'selection' (criterion last_evals)")
    last = raw.get("last", DEFAULT_LAST_EVALS)
    if not _is_int(last) or last < 1:
        raise ConfigError(f"{where}: 'selection.last' is {last!r}; expected a positive number of evaluations.")
    return {"criterion": "last_evals", "last": int(last)}


# ---------------------------------------------------------------------------- expansion
def expand_trials(spec: SweepSpec) -> list[dict[str, Any]]:
    from offrl.algos import get_algorithm
    from offrl.train.configs import config_to_json

    values = spec.values
    trials = []
    for algorithm in values["algorithms"]:
        algo = get_algorithm(algorithm)
        fixed = values["config"].get(algorithm, {})
        points = _search_points(values, algorithm)
        for dataset in values["datasets"]:
            preset = _preset(values, algorithm, dataset)
            train = _trial_train(values, preset)
            for point in points:
                overrides = {**(preset.config if preset is not None else {}), **fixed, **point}
                try:
                    config = algo.Config(**_config_arguments(algo.Config, overrides))
                except (TypeError, ValueError) as error:
                    raise ConfigError(f"{spec.where}: hyperparameters {overrides} for {algorithm} are not accepted "
                                      f"({error}); expected values of the Config's field types.") from None
                algorithm_config = config_to_json(config)
                identity = {"algorithm": algorithm, "dataset": dataset, "algorithm_config": algorithm_config}
                trial_id = f"{algorithm}-{_slug(dataset_label(dataset))}-{spec_hash(identity)[:8]}"
                trials.append({
                    "id": trial_id,
                    "algorithm": algorithm,
                    "dataset": dataset,
                    "dataset_label": dataset_label(dataset),
                    "hyperparameters": point,
                    "algorithm_config": algorithm_config,
                    "train": dict(train),
                    "seeds": list(values["seeds"]),
                    **({"preset": preset.to_json() if preset is not None else None} if values.get("presets") else {}),
                    **({"budget_scale": values["budget_scale"]} if "budget_scale" in values else {}),
                    "selection": dict(values["selection"]),
                    "data_dir": values["data_dir"],
                    "clip_actions": values["clip_actions"],
                })
    seen: dict[str, dict] = {}
    unique = []
    for trial in trials:  # random search may draw the same configuration twice: train it once
        if trial["id"] not in seen:
            seen[trial["id"]] = trial
            unique.append(trial)
    return unique


def _preset(values: dict[str, Any], algorithm: str, dataset: str):
    if not values.get("presets"):
        return None
    from offrl.train.presets import choose_preset

    return choose_preset(algorithm, None, dataset, None)


def _trial_train(values: dict[str, Any], preset) -> dict[str, Any]:
    """The spec's train settings, under a preset's budget where the spec gave none, then scaled."""
    train = dict(values["train"])
    if preset is not None:
        train.update({key: value for key, value in preset.train.items() if key not in values.get("train_given", [])})
    scale = values.get("budget_scale")
    if scale is not None:
        for key in ("steps", "eval_every", "checkpoint_every"):
            if train.get(key):
                train[key] = max(1, round(train[key] * scale))
        train["log_every"] = min(train["log_every"], train["steps"])
    return train


def _search_points(values: dict[str, Any], algorithm: str) -> list[dict[str, Any]]:
    grid = values["grid"].get(algorithm, {})
    search = values["search"]
    if search["kind"] == "grid":
        names = sorted(grid)
        return [dict(zip(names, combination)) for combination in itertools.product(*(grid[name] for name in names))]
    import numpy as np

    space = {name: {"choice": choices} for name, choices in grid.items()}
    space.update(search["space"].get(algorithm, {}))
    # One generator per algorithm, seeded by the search seed and the algorithm's name (not its
    # position in the list), so adding an algorithm does not change another's configurations.
    rng = np.random.default_rng([search["seed"], zlib.crc32(algorithm.encode())])
    points = []
    for _ in range(search["trials"]):
        point = {}
        for name in sorted(space):
            (kind, arguments), = space[name].items()
            if kind == "choice":
                point[name] = copy.deepcopy(arguments[int(rng.integers(len(arguments)))])
            elif kind == "uniform":
                point[name] = float(rng.uniform(*arguments))
            elif kind == "log_uniform":
                point[name] = float(math.exp(rng.uniform(math.log(arguments[0]), math.log(arguments[1]))))
            else:
                point[name] = int(rng.integers(arguments[0], arguments[1] + 1))
        points.append(point)
    return points


def _config_arguments(config_class: type, overrides: dict[str, Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(config_class)
    return {name: tuple(value) if typing.get_origin(hints[name]) is tuple else value for name, value in overrides.items()}


def dataset_label(argument: str) -> str:
    """A dataset's short name: a registered name as is, a path by its file or directory name."""
    path = Path(argument)
    if path.is_absolute() or path.exists():
        return path.name[: -len(path.suffix)] if path.suffix in (".npz", ".hdf5", ".h5") else path.name
    return argument


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", text).strip("_") or "dataset"


# ------------------------------------------------------------------------------- checks
def _check_keys(raw: dict, allowed, where: str, section: str, what: str = "key") -> None:
    for key in raw:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown {what} {key!r} in {section}; expected one of: {', '.join(allowed)}.")


def _string_list(raw: Any, where: str, key: str) -> list[str]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{where}: '{key}' is {_kind(raw)}; expected a non-empty list of names.")
    for index, item in enumerate(raw):
        if not isinstance(item, str) or not item.strip():
            raise ConfigError(f"{where}: {key}[{index}] is {item!r}; expected a non-empty string.")
    return [item.strip() for item in raw]


def _no_duplicates(items: list, where: str, key: str) -> None:
    seen = []
    for item in items:
        if item in seen:
            raise ConfigError(f"{where}: '{key}' lists {item!r} twice; expected each value once.")
        seen.append(item)


def _optional_string(raw: Any, where: str, key: str) -> str | None:
    if raw is not None and not isinstance(raw, str):
        raise ConfigError(f"{where}: '{key}' is {raw!r}; expected a path.")
    return raw


def _boolean(raw: Any, where: str, key: str) -> bool:
    if not isinstance(raw, bool):
        raise ConfigError(f"{where}: '{key}' is {raw!r}; expected true or false.")
    return raw


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _base_type(annotation: Any) -> Any:
    options = [a for a in typing.get_args(annotation) if a is not type(None)]
    return options[0] if typing.get_origin(annotation) is not tuple and options else annotation


def _type_name(annotation: Any) -> str:
    if typing.get_origin(annotation) is tuple:
        return "a list of integers"
    optional = type(None) in typing.get_args(annotation)
    base = _base_type(annotation)
    name = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(base, str(base))
    return f"{name} or null" if optional else name


def _typed(value: Any, annotation: Any, where: str, key: str) -> Any:
    """`value` checked against a Config field's annotation (numbers widen int -> float)."""
    wrong = ConfigError(f"{where}: '{key}' is {value!r}; expected {_type_name(annotation)}.")
    if typing.get_origin(annotation) is tuple:
        if not isinstance(value, (list, tuple)) or not value or not all(_is_int(item) for item in value):
            raise wrong
        return tuple(int(item) for item in value)
    if value is None:
        if type(None) in typing.get_args(annotation):
            return None
        raise wrong
    base = _base_type(annotation)
    if base is bool:
        if not isinstance(value, bool):
            raise wrong
        return value
    if base is int:
        if not _is_int(value):
            raise wrong
        return value
    if base is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise wrong from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong
        return float(value)
    if base is str:
        if not isinstance(value, str):
            raise wrong
        return value
    raise wrong


def _json_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _kind(value: Any) -> str:
    if value is None:
        return "empty"
    return {dict: "a mapping", list: "a list", str: f"the text {value!r}"}.get(type(value), repr(value))
