"""Per-dataset settings ("presets"), one data file per algorithm, each entry citing its source.

`<algorithm>.json` holds `{"algorithm", "about", "presets": {DATASET: entry}}`; DATASET is D4RL's
own name (`hopper-medium-replay-v2`, `antmaze-umaze-v2`, `pen-human-v1`), or for the safe algorithms
DSRL's task name as OSRL writes it (`OfflineHopperVelocityGymnasium-v1`, `OfflineCarCircle-v0`); an entry is algorithm
Config fields, optionally `"train"` (TrainConfig fields: the reference's budget and evaluation
episodes), `"source"` (the reference file, with its repository and commit) and `"note"` (what the
reference sets that offrl cannot express, said rather than hidden).

Order of precedence, lowest first: the algorithm's defaults, the preset, flags the user gives.
A public dataset name (`d4rl/hopper-medium-replay-v2`, Minari's `D4RL/antmaze/umaze-v1` or
`D4RL/pen/human-v2`) picks its preset automatically; `--preset NAME` picks one by hand and
`--preset none` turns it off. A preset for another environment than the dataset's is refused.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from offrl.data.public_names import parse_public_name
from offrl.errors import ConfigError

PRESET_DIR = Path(__file__).parent
_ADROIT_PREFIX = "adroithand"  # gymnasium-robotics' AdroitHandPen-v1, AdroitHandDoor-v1, ...
# DSRL's task names (OfflineCarCircle1Gymnasium-v0) and the env ids behind them (SafetyCarCircle1-v0,
# offrl/SafetyHopperVelocity-v1) name one task once these are stripped
_DSRL_PREFIXES = ("offline", "safety")
_DSRL_SUFFIX = "gymnasium"
NONE = "none"
AUTO = "auto"


@dataclass(frozen=True)
class Preset:
    algorithm: str
    name: str  # D4RL dataset name, e.g. hopper-medium-replay-v2
    config: dict[str, Any]  # algorithm Config fields
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields
    source: str = ""
    note: str | None = None

    @property
    def env(self) -> str:
        return self.name.split("-", 1)[0]  # hopper, halfcheetah, walker2d, antmaze, pen, door, hammer, relocate

    def to_json(self) -> dict[str, Any]:
        return {"algorithm": self.algorithm, "name": self.name, "config": dict(self.config), "train": dict(self.train),
                "source": self.source, **({"note": self.note} if self.note else {})}


@functools.cache
def load_presets(algorithm: str) -> dict[str, Preset]:
    """Every preset of `algorithm` by dataset name ({} when the references do not tune per dataset)."""
    path = PRESET_DIR / f"{algorithm}.json"
    if not path.is_file():
        return {}
    document = json.loads(path.read_text())
    presets = {}
    for name, entry in document["presets"].items():
        entry = dict(entry)
        source, note, train = entry.pop("source"), entry.pop("note", None), entry.pop("train", {})
        presets[name] = Preset(algorithm=algorithm, name=name, config=entry, train=train, source=source, note=note)
    return presets


def about(algorithm: str) -> str | None:
    path = PRESET_DIR / f"{algorithm}.json"
    return json.loads(path.read_text()).get("about") if path.is_file() else None


def preset_key_for(dataset_name: str | None) -> str | None:
    """The preset key a public dataset name maps to (d4rl/hopper-medium-v2 -> hopper-medium-v2)."""
    if not dataset_name:
        return None
    public = parse_public_name(dataset_name)
    return public.preset_key if public is not None else None


def choose_preset(algorithm: str, requested: str | None, dataset_name: str | None, env_id: str | None) -> Preset | None:
    """The preset to apply: `requested` by name, none for "none", else the dataset's own (if any).

    A preset for another environment than the dataset's (`env_id`, e.g. HalfCheetah-v4) is refused."""
    if requested is not None and requested.lower() == NONE:
        return None
    presets = load_presets(algorithm)
    if requested is None or requested.lower() == AUTO:
        key = preset_key_for(dataset_name)
        return presets.get(key) if key else None
    if requested not in presets:
        listed = ", ".join(presets) if presets else "none exist: the references do not tune it per dataset"
        raise ConfigError(f"--preset {requested!r} is not a preset of {algorithm}; expected 'none' or one of: {listed}.")
    preset = presets[requested]
    dataset_env = _env_family(env_id) if env_id else None
    if dataset_env is not None and dataset_env != _env_family(preset.env):
        raise ConfigError(f"--preset {requested!r} is tuned for {preset.env}, but dataset {dataset_name!r} is {env_id}; "
                          f"expected a preset of the same environment (`offrl presets {algorithm}`) or --preset none.")
    return preset


def _env_family(name: str) -> str:
    """hopper / halfcheetah / walker2d / ant / antmaze / pen / door / hammer / relocate from an env id (with or
    without its overrides: 'AdroitHandPen-v1 {"max_episode_steps": 200}') or a preset env ("Hopper-v4" -> "hopper").
    DSRL's velocity tasks are their robot (OfflineHopperVelocityGymnasium, offrl/SafetyHopperVelocity-v1 -> hopper);
    its other tasks are themselves (OfflineAntRun, SafetyAntRun-v0 -> antrun: not MuJoCo's Ant)."""
    lowered = name.partition(" ")[0].lower().split("-v")[0].replace("_", "").replace("-", "").rpartition("/")[2]
    if lowered.startswith(_ADROIT_PREFIX):  # by prefix, not substring: Pendulum-v1 is not pen
        return lowered[len(_ADROIT_PREFIX):]
    if lowered.startswith(_DSRL_PREFIXES):
        task = lowered.removeprefix(_DSRL_PREFIXES[0]).removeprefix(_DSRL_PREFIXES[1]).removesuffix(_DSRL_SUFFIX)
        if not task.endswith("velocity"):
            return task
        lowered = task
    for family in ("antmaze", "halfcheetah", "walker2d", "hopper", "ant"):
        if family in lowered:
            return family
    return lowered


def apply_preset(preset: Preset | None, config_class: type, given: dict[str, Any]) -> dict[str, Any]:
    """Config field values: the preset's, then the ones `given` (flags) on top."""
    values = dict(preset.config) if preset is not None else {}
    hints = typing.get_type_hints(config_class)
    names = {f.name for f in dataclasses.fields(config_class)}
    for name in values:
        if name not in names:  # a broken preset file, not user input: say which entry
            raise ConfigError(f"Preset {preset.name!r} of {preset.algorithm} sets {name!r}, which "
                              f"{config_class.__name__} does not have; expected one of its fields.")
        if typing.get_origin(hints[name]) is tuple and isinstance(values[name], list):
            values[name] = tuple(values[name])
    values.update(given)
    return values


def describe(preset: Preset | None, dataset_name: str | None, requested: str | None) -> str:
    """The line printed at the start of training."""
    if preset is None:
        if requested is not None and requested.lower() == NONE:
            return "preset: none (--preset none): the algorithm's defaults"
        return f"preset: none for {dataset_name or 'this dataset'}: the algorithm's defaults"
    values = ", ".join(f"{k}={v}" for k, v in {**preset.config, **preset.train}.items())
    return f"preset: {preset.algorithm}/{preset.name} ({values}) from {preset.source}"
