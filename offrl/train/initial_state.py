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
    """One initial state per key (stacked along a leading seed axis), as one compiled call.

    The seeds are initialised one after another (`lax.map`), not `vmap`ped, so each seed's state is
    computed by the very kernels of a single-seed init. (A vmapped init once hung here: batched QR
    custom calls deadlocked jaxlib 0.10's CPU runtime, `offrl train iql --seeds 3` at width 256;
    offrl's orthogonal initialiser no longer calls LAPACK, offrl/nets/mlp.py.)"""
    return jax.jit(lambda keys, spec, config: jax.lax.map(lambda key: algo.init(key, spec, config), keys),
                   static_argnums=(1, 2))(keys, spec, config)
