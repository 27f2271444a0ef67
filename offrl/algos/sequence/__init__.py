"""Sequence-model offline algorithms: policies conditioned on a window of past steps."""

from offrl.algos.sequence import dt

__all__ = ["dt"]
