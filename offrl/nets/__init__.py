"""Plain Flax modules shared by algorithms. Imports no other offrl room."""

from offrl.nets.critics import CriticEnsemble, ValueNetwork
from offrl.nets.mlp import MLP, default_init
from offrl.nets.policies import DeterministicPolicy, GaussianPolicy, TanhGaussianPolicy

__all__ = [
    "MLP",
    "default_init",
    "CriticEnsemble",
    "ValueNetwork",
    "DeterministicPolicy",
    "GaussianPolicy",
    "TanhGaussianPolicy",
]
