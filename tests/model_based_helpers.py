"""Tiny model-based settings for the generic tests that loop over every algorithm: a 3-member
ensemble trained for two epochs, short rollouts into a small model buffer (MOPO's defaults,
50,000 rollouts into 1.25M rows and an ensemble of 7 x 4 x 200, are sized for D4RL)."""

from __future__ import annotations

from types import ModuleType

SMALL_MODEL_BASED = {
    "horizon": 2, "rollout_batch": 32, "rollout_every": 5, "model_buffer_capacity": 256,
    "dynamics_num_models": 3, "dynamics_num_elites": 2, "dynamics_hidden_dims": (16, 16),
    "dynamics_weight_decay": (1e-5, 1e-5, 1e-5), "dynamics_max_epochs": 2, "termination": "never",
}


def small_model_settings(algo: ModuleType) -> dict:
    """SMALL_MODEL_BASED for an algorithm that trains on model rollouts, else nothing."""
    return dict(SMALL_MODEL_BASED) if getattr(algo, "rollout_settings", None) is not None else {}
