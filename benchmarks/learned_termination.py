"""Measures the dynamics ensemble's learned terminal head (`--termination learned`) where the true
termination is known: uniform-random Hopper-v5 episodes, whose terminals are Hopper's health
check (the hand-written box in offrl/envs/termination.py matches them exactly, checked first).
Trains a terminal-head ensemble on one set of episodes and scores the elites' mean probability
> 0.5 on its held-out rows and on fresh episodes: recall (terminal rows), specificity (the
others), precision (rows called terminal that are). One JSON line per positive weight.

    nice -n 10 python benchmarks/learned_termination.py [--episodes 400] [--weights default 1 full]

`default` is the library's square-root rule (offrl.models.training.terminal_positive_weight),
`full` the inverse class ratio, a number that weight.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np

from offrl.data.collect import collect_episodes
from offrl.data.transforms import fit_normalizer
from offrl.envs.termination import termination_box
from offrl.models.training import DynamicsConfig, terminal_accuracy, train_dynamics


def uniform_random(observations: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(-1.0, 1.0, size=(observations.shape[0], 3)).astype(np.float32)  # Hopper: 3 actions in [-1, 1]


def summary(scores: dict) -> dict:
    return {name: value for name, value in scores.items() if name.startswith("elite") or name.endswith("rows")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--episodes", type=int, default=400)
    parser.add_argument("--weights", nargs="+", default=["default", "1", "full"])
    args = parser.parse_args()
    train = collect_episodes(args.env, uniform_random, num_episodes=args.episodes, seed=0)
    fresh = collect_episodes(args.env, uniform_random, num_episodes=args.episodes, seed=1)
    low, high = termination_box(args.env, train.spec.observation_dim)
    box = ((fresh.next_observations < low) | (fresh.next_observations > high)).any(1)
    print(json.dumps({"env": args.env, "rows": train.num_transitions, "terminal_rows": int(train.terminals.sum()),
                      "box_agrees_with_recorded_terminals": float((box == fresh.terminals).mean())}))
    normalizer = fit_normalizer(train, False, False)

    def scaled(actions):
        return np.clip(normalizer.scale_actions(actions), -1.0, 1.0).astype(np.float32)

    ratio = float((~train.terminals).sum() / train.terminals.sum())
    for weight in args.weights:
        positive_weight = None if weight == "default" else ratio if weight == "full" else float(weight)
        config = DynamicsConfig(num_models=5, num_elites=3, hidden_dims=(200, 200), weight_decay=(2.5e-5, 5e-5, 1e-4),
                                terminal_head=True, terminal_positive_weight=positive_weight)
        started = time.perf_counter()
        trained = train_dynamics(train.observations, scaled(train.actions), train.rewards, train.next_observations, config,
                                 terminals=train.terminals)
        model = trained.model
        inputs = (np.concatenate([fresh.observations, scaled(fresh.actions)], 1) - model.input_mean) / model.input_std
        _, _, logit = jax.jit(model.network.apply)(model.params, inputs)
        scores = terminal_accuracy(np.asarray(logit), fresh.terminals, np.asarray(model.elites))
        print(json.dumps({"weight": weight, "positive_weight": trained.holdout_terminal["positive_weight"], "epochs": trained.epochs,
                          "seconds": round(time.perf_counter() - started, 1), "held_out": summary(trained.holdout_terminal),
                          "fresh": summary(scores)}))


if __name__ == "__main__":
    main()
