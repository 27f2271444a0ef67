"""An algorithm's initial state, built by one compiled call.

`algo.init` run eagerly executes Flax's initialisers op by op, and each op is compiled on its
own: a Decision Transformer's init made about 100 small compilations (7 s on CPU here), RLPD's ten
vmapped critics over 10 s. One jitted call compiles once (and is then found in JAX's caches).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import jax

from offrl.types import Spec


def init_state(algo: ModuleType, key: jax.Array, spec: Spec, config: Any) -> Any:
    """`algo.init(key, spec, config)` as one compiled call."""
    return jax.jit(algo.init, static_argnums=(1, 2))(key, spec, config)


def init_states(algo: ModuleType, keys: jax.Array, spec: Spec, config: Any) -> Any:
    """One initial state per key (stacked along a leading seed axis), as one compiled call."""
    return jax.jit(jax.vmap(algo.init, in_axes=(0, None, None)), static_argnums=(1, 2))(keys, spec, config)
