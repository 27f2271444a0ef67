"""Divergence: a NaN/inf loss, non-finite parameters or a `q_*` metric beyond `max_abs_q`.

The engine checks after every fused chunk and stops a diverged run (or, in a multi-seed program,
only the diverged seed) without checkpointing the bad state.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from offrl.train.run_dir import RunDirectory


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss or parameters, or a Q-value beyond `max_abs_q`."""

    def __init__(self, message: str, step: int, quantity: str, value: float):
        super().__init__(message)
        self.step, self.quantity, self.value = step, quantity, value


def _all_finite(state) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(state)
              if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


all_finite = jax.jit(_all_finite)
all_finite_per_seed = jax.jit(jax.vmap(_all_finite))  # a stacked state: one flag per seed


def find_divergence(metrics: dict[str, float], state: Any, finite: bool, max_abs_q: float) -> tuple[str, float, str] | None:
    """(quantity, value, why) for the first sign of divergence, or None.

    `finite` says whether every float leaf of `state` is finite. A NaN metric alone is not
    divergence: a chunk may hold no update of a delayed quantity (nanmean of nothing); a NaN loss
    that reached the parameters shows in the state.
    """
    for name, value in metrics.items():
        if math.isinf(value):
            return f"metric '{name}'", value, f"metric '{name}' is {value:g}"
        if name.startswith("q_") and abs(value) > max_abs_q:
            return f"metric '{name}'", value, f"metric '{name}' is {value:g}, beyond --max-abs-q {max_abs_q:g}"
    if finite:
        return None
    for name, value in metrics.items():
        if math.isnan(value):
            return f"metric '{name}'", value, f"metric '{name}' is NaN and the parameters are no longer finite"
    for path, leaf in jax.tree_util.tree_leaves_with_path(jax.device_get(state)):
        leaf = np.asarray(leaf)
        if leaf.dtype.kind == "f" and not np.all(np.isfinite(leaf)):
            where = jax.tree_util.keystr(path)
            return f"state {where}", float("nan"), f"state {where} holds NaN or infinite values"
    return "the state", float("nan"), "the state holds NaN or infinite values"


def mark_diverged(run: RunDirectory, previous_step: int, step: int, problem, last_checkpoint: Path | None) -> DivergenceError:
    """Record the divergence in the run's summary ("diverged") and return the error to raise."""
    quantity, value, what = problem
    kept = f"the last good checkpoint is {last_checkpoint.name}" if last_checkpoint else "no checkpoint was written"
    message = (
        f"Training diverged in the updates after step {previous_step} (by step {step}): {what}; "
        f"{kept} (try a smaller learning rate)."
    )
    run.update_summary(status="diverged", error=message, divergence={
        "step": step, "after_step": previous_step, "quantity": quantity, "value": repr(value),
        "last_checkpoint": None if last_checkpoint is None else last_checkpoint.name,
    })
    return DivergenceError(message, step, quantity, value)
