"""Dataset-generation workflows: train behaviour agents, record dataset levels, register them.

Above the engines (it trains SAC and SAC-Lag with `offrl.train.online`); the recording helpers that
need no agent live in `offrl.data.collect`."""

from offrl.suites.d4rl_recipe import LEVELS, MEDIUM_FRACTION, make_suite
from offrl.suites.safe_recipe import make_safe_dataset

__all__ = ["LEVELS", "MEDIUM_FRACTION", "make_safe_dataset", "make_suite"]
