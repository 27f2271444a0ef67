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
    "edp": (3_000, {"actor_learning_rate": 1e-3, "critic_learning_rate": 1e-3}),
}
THRESHOLDS = {"fql": -500.0, "idql": -800.0, "edp": -450.0}

BROKEN = {
    "fql": {"alpha": 1e6},  # Q term negligible beside the distillation: the one-step policy copies the flow BC policy
    "idql": {"num_samples": 1},  # no re-ranking by the critic: diffusion BC
    "edp": {"eta": 0.0, "num_samples": 1},  # no Q term in the actor loss and no selection by Q: diffusion BC
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


@pytest.mark.slow
def test_edp_learns_where_bc_fails(pendulum_mostly_random_dataset, tmp_path):
    """EDP with its defaults (T = 1000, actions from K = 15 third-order DPM-Solver steps, one of
    N = 50 picked by softmax(Q)), lr 1e-3 for both networks: 3k updates: -206 / -263 / -203 (seeds
    0-2; 2k updates: -707 / -690 / -789; the first-order solver on T = 100: -199 / -275 / -188),
    so the threshold is -450 (seeds 3, 4: -249 / -252).
    Broken, diffusion BC (eta = 0 and N = 1: no Q term in the actor loss, no selection by Q):
    -1275 / -1224 / -1168; the test fails on it. Switching off the Q term alone does not break it:
    eta = 0 with N = 50 (selection by Q still on, IDQL's mechanism) -185 / -283 / -197 passes, while
    the Q term alone (N = 1, eta = 1) -1180 / -1174 / -1120 fails (eta 2: -1130, eta 10: -953,
    seed 0): on these data and this budget EDP learns through its energy-based action selection.
    26 s (one pytest process, 2-core machine under a load of ~5; 41 s under ~9)."""
    score = final_return("edp", pendulum_mostly_random_dataset, tmp_path)
    assert score > THRESHOLDS["edp"], f"EDP reached {score:.0f}, expected above {THRESHOLDS['edp']:.0f}"
