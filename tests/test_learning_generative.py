"""FQL, IDQL and EDP learn Pendulum-v1 from the 80%-random data where BC stays near -850
(`pendulum_mostly_random_dataset`, tests/conftest.py; the premise is guarded by
tests/test_learning.py::test_bc_fails_on_mostly_random_data), and fail with their own mechanism
switched off (BROKEN below). Thresholds sit at least 150 below the worst of seeds 0-2 and above
every broken score; the measurements are in each docstring and in docs/learning-tests.md.
64x64 networks, as in tests/test_learning.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from offrl.algos import get_algorithm
from offrl.train.offline import TrainConfig, train_offline

SETTINGS = {
    # FQL: the paper tunes alpha per task; with Q normalised, this data (80% random actions) needs
    # a small distillation weight, as TD3+BC needs alpha 20 here (tests/test_learning.py).
    "fql": (10_000, {"alpha": 0.03}),
    # IQL's test settings (expectile 0.9, lr 1e-3) and a 64x64 denoiser.
    "idql": (6_000, {"expectile": 0.9, "actor_hidden_dims": (64, 64), "actor_learning_rate": 1e-3,
                     "critic_learning_rate": 1e-3, "value_learning_rate": 1e-3}),
}
THRESHOLDS = {"fql": -500.0, "idql": -800.0}

BROKEN = {
    "fql": {"alpha": 1e6},  # Q term negligible beside the distillation: the one-step policy copies the flow BC policy
    "idql": {"num_samples": 1},  # no re-ranking by the critic: diffusion BC
}


def final_return(name: str, dataset, tmp_path, seed: int = 0, **changes) -> float:
    steps, overrides = SETTINGS[name]
    algo = get_algorithm(name)
    config = algo.Config(**{"hidden_dims": (64, 64), **overrides, **changes})
    train = TrainConfig(steps=steps, eval_every=steps, log_every=1_000, eval_episodes=10, seed=seed)
    result = train_offline(algo, config, dataset, train, tmp_path / f"{name}-{seed}", progress=False)
    assert np.isfinite(result.summary["updates_per_second"])
    return result.summary["final_return"]


@pytest.mark.slow
def test_idql_learns_where_bc_fails(pendulum_mostly_random_dataset, tmp_path):
    """IDQL (N = 64 samples ranked by Q): 6k updates: -175 / -156 / -620 (seeds 0-2), so the
    threshold is -800 (150 below the worst seed), only ~50 above BC's -846/-878/-854 on these data:
    seed 2 learned far less within this budget. Broken, N = 1 (no re-ranking: the diffusion
    behaviour model alone): -1147 (seed 0); the test fails on it."""
    score = final_return("idql", pendulum_mostly_random_dataset, tmp_path)
    assert score > THRESHOLDS["idql"], f"IDQL reached {score:.0f}, expected above {THRESHOLDS['idql']:.0f}"


@pytest.mark.slow
def test_fql_learns_where_bc_fails(pendulum_mostly_random_dataset, tmp_path):
    """FQL (alpha 0.03, Q normalised, K = 10): 10k updates: -131 / -229 / -142 (seeds 0-2);
    threshold -500. alpha 0.1: -434, alpha 3: -1215 (seed 0): with 80% random actions the flow BC
    policy is mostly noise, so distilling it harder holds the one-step policy there.
    Broken, alpha = 1e6 (Q term negligible: the one-step policy copies the flow BC policy):
    -1220 (seed 0); the test fails on it."""
    score = final_return("fql", pendulum_mostly_random_dataset, tmp_path)
    assert score > THRESHOLDS["fql"], f"FQL reached {score:.0f}, expected above {THRESHOLDS['fql']:.0f}"
