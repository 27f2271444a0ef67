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
