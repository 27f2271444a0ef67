"""Tiny settings for the generic tests that loop over every algorithm.

One `small_config` for every such loop (the engine's run directory, determinism and resume, the
contract, bootstrapping): the same algorithm, config and data shapes compile to the same
program, which the suite's persistent compilation cache (tests/conftest.py) then serves to every
file and worker after the first. The references' sizes are for D4RL and cost seconds per
compile and per update here:
- model-based: a 3-member ensemble trained for two epochs, short rollouts into a small model
  buffer (MOPO's defaults, 50,000 rollouts into 1.25M rows and an ensemble of 7 x 4 x 200), and
  2 sampled actions (COMBO) or next states (MOBILE) instead of 10;
- sequence models (DT, CDT): one head over 4-step windows (defaults: 10-20 steps, CDT 8 heads);
- SPOT: a small VAE pretrained for 50 updates (default 750 x 750 for 100,000 updates).
"""

from __future__ import annotations

import dataclasses
from types import ModuleType

SMALL_MODEL_BASED = {
    "horizon": 2, "rollout_batch": 32, "rollout_every": 5, "model_buffer_capacity": 256,
    "dynamics_num_models": 3, "dynamics_num_elites": 2, "dynamics_hidden_dims": (16, 16),
    "dynamics_weight_decay": (1e-5, 1e-5, 1e-5), "dynamics_max_epochs": 2, "termination": "never",
}
SMALL_SEQUENCE = {"num_heads": 1, "context_length": 4}
SMALL_VAE = {"vae_steps": 50, "vae_hidden_dims": (32, 32)}


# COMBO's sampled actions per state and MOBILE's next-state samples per elite (10 each by default)
SMALL_MODEL_SAMPLES = {"num_sampled_actions": 2, "num_samples": 2}


def small_model_settings(algo: ModuleType) -> dict:
    """SMALL_MODEL_BASED (and the SMALL_MODEL_SAMPLES its Config has) for an algorithm that trains
    on model rollouts, else nothing."""
    if getattr(algo, "rollout_settings", None) is None:
        return {}
    fields = {field.name for field in dataclasses.fields(algo.Config)}
    return {**SMALL_MODEL_BASED, **{name: value for name, value in SMALL_MODEL_SAMPLES.items() if name in fields}}


def small_config(algo: ModuleType, **changes):
    """`algo.Config` with 32 x 32 networks, batches of 64 and the small settings above that its
    fields take; `changes` override any of them."""
    fields = {field.name for field in dataclasses.fields(algo.Config)}
    settings = {"hidden_dims": (32, 32), "batch_size": 64, **small_model_settings(algo)}
    for extra in (SMALL_SEQUENCE, SMALL_VAE):
        settings.update({name: value for name, value in extra.items() if name in fields})
    return algo.Config(**{**settings, **changes})
