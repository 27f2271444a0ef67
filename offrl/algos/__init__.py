"""One module per algorithm, each with `Config`, `init`, `update`, `act`, `NAME`, `DESCRIPTION`, `PAPER`,
in family packages: `model_free/`, `sequence/`, `online/` (and, as they land, `model_based/`,
`generative/`, `safe/`). The registry below is the one place that knows every family; the
modules are re-exported here so `from offrl.algos import td3_bc` keeps working."""

from __future__ import annotations

from types import ModuleType

from offrl.algos.generative import edp, fql, idql
from offrl.algos.model_based import combo, mobile, mopo, ravl
from offrl.algos.model_free import awac, bc, calql, cql, edac, iql, percent_bc, rebrac, riql, sac_n, spot, td3_bc
from offrl.algos.online import rlpd, sac  # noqa: F401 - sac re-exported (dataset generation's agent)
from offrl.algos.safe import bc_all, bc_safe, bcq_lag, cdt, coptidice, cpq
from offrl.algos.sequence import dt
from offrl.errors import ConfigError

ALGORITHMS: dict[str, ModuleType] = {
    module.NAME: module for module in (bc, td3_bc, iql, cql, rebrac, sac_n, edac, percent_bc, spot, awac, dt, calql, riql, fql, idql, edp,
                                      bc_all, bc_safe, cdt, bcq_lag, cpq, coptidice, mopo, ravl, mobile, combo)
}

# Trained online with a dataset as prior data (offrl.train.finetune), not by the offline engine:
# `offrl train NAME` dispatches them to the fine-tuning engine from an untrained agent.
ONLINE_ALGORITHMS: dict[str, ModuleType] = {module.NAME: module for module in (rlpd,)}


def get_algorithm(name: str) -> ModuleType:
    known = {**ALGORITHMS, **ONLINE_ALGORITHMS}
    try:
        return known[name.lower()]
    except KeyError:
        raise ConfigError(
            f"Unknown algorithm {name!r}; expected one of: {', '.join(sorted(known))}."
        ) from None
