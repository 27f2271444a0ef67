"""Plain Flax modules shared by algorithms. Imports no other offrl room."""

from offrl.nets.critics import CriticEnsemble, ValueNetwork
from offrl.nets.ensemble import apply_members, member_action_gradients
from offrl.nets.mlp import MLP, default_init
from offrl.nets.policies import DeterministicPolicy, GaussianPolicy, PerturbationActor, TanhGaussianPolicy
from offrl.nets.scalar import LogScalar
from offrl.nets.vae import ConditionalVAE

__all__ = [
    "MLP",
    "default_init",
    "CriticEnsemble",
    "ValueNetwork",
    "DeterministicPolicy",
    "GaussianPolicy",
    "PerturbationActor",
    "TanhGaussianPolicy",
    "LogScalar",
    "ConditionalVAE",
    "apply_members",
    "member_action_gradients",
]
