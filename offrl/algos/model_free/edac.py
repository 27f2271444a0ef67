"""EDAC (An, Moon, Kim & Song, 2021, "Uncertainty-Based Offline Reinforcement Learning with
Diversified Q-Ensemble").

SAC-N plus an ensemble-gradient diversity term, so a much smaller ensemble is as pessimistic
out of distribution: the critics' action-gradients at dataset actions are pushed apart,
    critic loss += eta * 1/(N-1) * sum_{i != j} <g_i, g_j>,  g_i = grad_a Q_i(s, a) / |grad_a Q_i(s, a)|
(the normalised inner products of CORL's `edac.py`; averaged over the batch). The gradients
come from one backward pass: `member_action_gradients` differentiates each member on its own
copy of the actions (jax.grad over the action input of the vmapped ensemble).
Defaults are CORL's `edac.py` / the paper's Table for halfcheetah: N = 10, eta = 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from offrl.algos.model_free import sac_n
from offrl.algos.model_free.sac_n import State, act, init  # noqa: F401  (same networks and policy as SAC-N)
from offrl.nets import CriticEnsemble, member_action_gradients
from offrl.types import Batch

NAME = "edac"
DESCRIPTION = "EDAC: SAC-N with a term that diversifies the critics' action-gradients."
PAPER = "An, Moon, Kim & Song 2021, Uncertainty-Based Offline RL with Diversified Q-Ensemble"


@dataclass(frozen=True)
class Config(sac_n.Config):
    num_critics: int = 10  # CORL edac / paper, halfcheetah
    eta: float = 1.0  # CORL edac / paper, halfcheetah: weight of the diversity term


def gradient_diversity(action_gradients: jax.Array) -> jax.Array:
    """1/(N-1) sum_{i != j} cos(g_i, g_j), averaged over the batch. action_gradients: (N, batch, action_dim).

    Equals N when every critic has the same action-gradient direction, 0 when they are orthogonal.
    """
    num_critics = action_gradients.shape[0]
    # sqrt(|g|^2 + eps) rather than |g| + eps: the gradient of |g| is NaN where g = 0 (a sample on
    # which every ReLU of a critic is off), and that NaN reached the parameters in training.
    unit = action_gradients / jnp.sqrt((action_gradients**2).sum(axis=-1, keepdims=True) + 1e-20)
    similarity = jnp.einsum("ibd,jbd->bij", unit, unit)
    off_diagonal = similarity * (1.0 - jnp.eye(num_critics))
    return off_diagonal.sum(axis=(1, 2)).mean() / (num_critics - 1)


def update(state: State, batch: Batch, config: Config) -> tuple[State, dict[str, jax.Array]]:
    critic = CriticEnsemble(config.hidden_dims, num_critics=config.num_critics)

    def diversity(params, batch, key):
        value = gradient_diversity(member_action_gradients(critic, params, batch.observations, batch.actions))
        return config.eta * value, {"gradient_diversity": value}

    return sac_n.ensemble_sac_update(state, batch, config, critic_regularizer=diversity)
