"""offrl's orthogonal initialiser: Flax's values, without the LAPACK call that deadlocked jaxlib 0.10's
CPU runtime when several batched QRs ran at once (SAC-N's and EDAC's 10 x 256 critic ensembles hung at init)."""

from __future__ import annotations

import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from offrl.nets.critics import CriticEnsemble
from offrl.nets.mlp import orthogonal_init


@pytest.mark.parametrize("shape", [(14, 64), (64, 64), (64, 1), (3, 5)])
def test_orthogonal_init_equals_flaxs_and_is_orthogonal(shape):
    key = jax.random.PRNGKey(3)
    ours = np.asarray(jax.jit(lambda k: orthogonal_init(1.5)(k, shape))(key))
    np.testing.assert_allclose(ours, np.asarray(nn.initializers.orthogonal(1.5)(key, shape)), atol=1e-5)
    small = min(shape)
    gram = ours.T @ ours if shape[0] >= shape[1] else ours @ ours.T
    np.testing.assert_allclose(gram, 1.5 ** 2 * np.eye(small), atol=1e-4)


def test_ensemble_init_calls_no_qr():
    """The vmapped ensemble's init is matmuls only: no QR (LAPACK) in its program."""
    module = CriticEnsemble((16, 16), num_critics=8)
    program = str(jax.make_jaxpr(module.init)(jax.random.PRNGKey(0), jnp.zeros((1, 3)), jnp.zeros((1, 1))))
    assert not re.search(r"\b(qr|householder_product|geqrf)\b", program)
    assert "dot_general" in program
