"""Measures the CDT learning test's seeds and variants (tests/test_safe.py test_cdt_cost_falls_as_its_target_cost_falls).

The test's settings on the safe-and-unsafe torque-cost Pendulum data, seeds 0-2; each policy evaluated at
target cost 40 and 0 (10 episodes). Variants: test (the test's settings: Pareto augmentation on,
the tanh + MSE head without cost prediction), test_no_aug (augment_fraction 0), test_broken
(use_cost False); default and broken: the same with OSRL's default heads (Gaussian + entropy
bonus, cost prediction 0.02); default_4k: 4,000 updates. The test's settings feed raw cost tokens and
draw uniform window starts; test_osrl_tokens restores OSRL's 50 - C transform and draws weighted by
70 - episode cost (the defaults), test_no_transform only the draws, test_no_cost_sample only the
transform. One JSON line per run:

    cd tests && python ../benchmarks/cdt_learning.py [variant ...]
"""

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import numpy as np  # noqa: E402
from offrl.algos import get_algorithm
from offrl.evaluate.rollout import evaluate_policy
from offrl.envs.torque_cost import PENDULUM_TORQUE_COST_ID
from offrl.train.offline import TrainConfig, train_offline
from safe_learning_data import safe_and_unsafe_pendulum
from test_safe import CDT_SETTINGS

algo = get_algorithm("cdt")
refs = (-1270.0, -143.0)
data = safe_and_unsafe_pendulum(refs)
# CDT_SETTINGS hold the test's deterministic head; "default" and "broken" here restore OSRL's heads.
OSRL_HEADS = {"stochastic": True, "cost_loss_weight": 0.02}
variants = {"test": {}, "test_no_aug": {"augment_fraction": 0.0}, "test_broken": {"use_cost": False},
            "test_osrl_tokens": {"cost_sample_offset": 70.0, "cost_token_offset": 50.0},
            "test_no_transform": {"cost_sample_offset": 70.0}, "test_no_cost_sample": {"cost_token_offset": 50.0},
            "default": OSRL_HEADS, "broken": {**OSRL_HEADS, "use_cost": False}, "default_4k": {**OSRL_HEADS, "_steps": 4000}}
for name in sys.argv[1:] or variants:
    for seed in (0, 1, 2):
        t = time.time()
        settings = dict(variants[name])
        steps = settings.pop("_steps", 2000)
        train = TrainConfig(steps=steps, eval_every=steps, log_every=steps, eval_episodes=10, seed=seed)
        with tempfile.TemporaryDirectory() as d:
            policy = train_offline(algo, algo.Config(**{**CDT_SETTINGS, **settings}), data, train, Path(d) / "r", progress=False).policy
            out = {}
            for target in (40.0, 0.0):
                policy.state = policy.state.replace(target_cost=np.float32(target))
                ev = evaluate_policy(policy, PENDULUM_TORQUE_COST_ID, 10, seed=10_000)
                out[target] = (round(ev.mean_cost, 1), round(ev.mean_return, 1))
        print(json.dumps({"variant": name, "seed": seed, "cost_ret_at_40": out[40.0], "cost_ret_at_0": out[0.0], "s": round(time.time() - t)}), flush=True)
