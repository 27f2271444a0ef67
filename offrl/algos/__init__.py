"""One module per algorithm, each with `Config`, `init`, `update`, `act`, `NAME`, `DESCRIPTION`, `PAPER`."""

from __future__ import annotations

from types import ModuleType

from offrl.algos import awac, bc, cql, edac, iql, percent_bc, rebrac, sac_n, spot, td3_bc
from offrl.errors import ConfigError

ALGORITHMS: dict[str, ModuleType] = {
    module.NAME: module for module in (bc, td3_bc, iql, cql, rebrac, sac_n, edac, percent_bc, spot, awac)
}


def get_algorithm(name: str) -> ModuleType:
    try:
        return ALGORITHMS[name.lower()]
    except KeyError:
        raise ConfigError(
            f"Unknown algorithm {name!r}; expected one of: {', '.join(sorted(ALGORITHMS))}."
        ) from None
