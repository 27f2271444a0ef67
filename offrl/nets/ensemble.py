"""Per-member access to a `CriticEnsemble`: each critic evaluated on its own inputs.

`CriticEnsemble` broadcasts one (observations, actions) pair to every member. EDAC needs the
action-gradient of each member separately; with per-member action inputs a single `jax.grad`
of the summed outputs gives all of them in one backward pass (instead of one pass per member).
"""

from __future__ import annotations

import jax

from offrl.nets.critics import CriticEnsemble, _QNetwork


def apply_members(critic: CriticEnsemble, params: dict, observations: jax.Array, actions: jax.Array) -> jax.Array:
    """Q_i(observations[i], actions[i]) for every member i: inputs and output have a leading axis num_critics.

    Reads the stacked member parameters that `CriticEnsemble`'s `nn.vmap` creates (leading axis =
    member), and maps one `_QNetwork` over them.
    """
    (members,) = params["params"].values()
    member = _QNetwork.member_of(critic)
    return jax.vmap(lambda p, o, a: member.apply({"params": p}, o, a))(members, observations, actions)


def member_action_gradients(critic: CriticEnsemble, params: dict, observations: jax.Array, actions: jax.Array) -> jax.Array:
    """dQ_i(s_b, a)/da at a = actions[b] for every member i and sample b: shape (num_critics, batch, action_dim)."""
    tiled_observations = jax.numpy.broadcast_to(observations, (critic.num_critics, *observations.shape))
    tiled_actions = jax.numpy.broadcast_to(actions, (critic.num_critics, *actions.shape))
    # Q_i(s_b, a_b) depends only on member i's copy of a_b, so the gradient of the total sum
    # with respect to the tiled actions is every per-member, per-sample action-gradient.
    return jax.grad(lambda a: apply_members(critic, params, tiled_observations, a).sum())(tiled_actions)
