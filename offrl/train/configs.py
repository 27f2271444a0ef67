"""Dataclass configs to and from JSON (and the types the CLI parses them with)."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from offrl.errors import ConfigError


def config_to_json(config: Any) -> dict[str, Any]:
    return {field.name: _to_json_value(getattr(config, field.name)) for field in dataclasses.fields(config)}


def _to_json_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def config_from_json(config_class: type, values: dict[str, Any], where: str = "config") -> Any:
    """Build `config_class` from JSON values, refusing unknown fields with a clear message."""
    hints = typing.get_type_hints(config_class)
    names = {field.name for field in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            f"{where}: unknown field {unknown[0]!r} for {config_class.__module__}.{config_class.__name__}; "
            f"expected one of: {', '.join(sorted(names))}."
        )
    converted = {}
    for name, value in values.items():
        converted[name] = tuple(value) if _is_tuple(hints[name]) and isinstance(value, list) else value
    return config_class(**converted)


def _is_tuple(annotation: Any) -> bool:
    return typing.get_origin(annotation) is tuple


def validate_algorithm_config(config: Any) -> None:
    """Range checks shared by every algorithm's Config, by field-name convention (a learning rate
    of None means "follow another one", e.g. CQL's temperature follows the actor's)."""
    for field in dataclasses.fields(config):
        name, value = field.name, getattr(config, field.name)
        flag = "--" + name.replace("_", "-")
        if (name.endswith("learning_rate") or name == "batch_size") and value is not None and not value > 0:
            raise ConfigError(f"{flag} is {value}; expected a positive number.")
        if name == "hidden_dims" and (len(value) == 0 or any(width <= 0 for width in value)):
            raise ConfigError(f"{flag} is {list(value)}; expected one or more positive layer widths.")
        if name == "target_cost" and value is not None and not 0.0 <= value < float("inf"):  # safe RL's cost threshold
            raise ConfigError(f"{flag} is {value}; expected a non-negative cost threshold per episode.")
        if name in ("discount", "tau", "expectile") and not 0.0 < value <= 1.0:
            raise ConfigError(f"{flag} is {value}; expected a value in (0, 1].")
