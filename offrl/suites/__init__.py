"""Dataset-generation workflows: train behaviour agents, record dataset levels, register them.

Above the engines (it trains SAC with `offrl.train.online`); the recording helpers that need no
agent live in `offrl.data.collect`."""

from offrl.suites.d4rl_recipe import LEVELS, MEDIUM_FRACTION, make_suite

__all__ = ["LEVELS", "MEDIUM_FRACTION", "make_suite"]
