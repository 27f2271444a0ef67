"""The behaviour row of benchmarks/ope_pendulum.py alone, with 30,000 FQE steps (benchmarks/ope.md).

Run: `nice -n 5 python benchmarks/ope_pendulum_behaviour.py` (prints one JSON line).
"""
import sys, time, json, numpy as np
from pathlib import Path
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks")); sys.path.insert(0, str(ROOT / "tests"))
import ope_pendulum as b
from scripted import mixed_quality
from offrl.data.collect import collect_episodes
from offrl.ope.fqe import FQEConfig, fit_fqe
from offrl.ope.evaluate_run import behaviour_return
b.register()
behaviour = mixed_quality(0.5, noise=0.5)
ds = collect_episodes(b.ENV_ID, behaviour, num_episodes=40, seed=0, name="pendulum-long-mixed")
cfg = FQEConfig(steps=30_000, hidden_dims=(64, 64), learning_rate=3e-4, batch_size=256, target_update_interval=50, num_bootstrap=4, seed=0)
rng = np.random.default_rng(1); t = time.time()
v, _ = fit_fqe(ds, lambda o: behaviour(o, rng), lambda a: np.asarray(a) / 2.0, cfg)
mc = behaviour_return(ds, 0.99, 2000, 0.95)
print(json.dumps({"fqe": v.estimate, "low": v.low, "high": v.high, "mc": mc["estimate"], "rel": abs(v.estimate - mc["estimate"]) / abs(mc["estimate"]), "seconds": time.time() - t}), flush=True)
