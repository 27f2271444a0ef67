"""d3rlpy's side of `offrl bench-speed --against d3rlpy`: steady-state `algo.update(batch)` rates.

Run as a file by an interpreter that has d3rlpy 2.8 and torch (`pip install offrl[bench]`, or a
separate venv): it imports neither JAX nor offrl, so it can live in a venv of its own.

    python d3rlpy_speed.py '{"algorithms": [{"name": "td3bc", "hidden_dims": [256, 256], "batch_size": 256}], ...}'

Reads one JSON object (the settings offrl's Configs use, see offrl.bench.speed.d3rlpy_settings)
and prints one JSON line. Each algorithm is built on an MDPDataset of random transitions of D4RL
HalfCheetah shape, batches are drawn with d3rlpy's own sampler before timing (its per-transition
Python sampler is timed separately as `sample_seconds_per_batch`), and `update` is timed in blocks
after a warm-up, with each requested torch thread count; the best block counts (a thread count
stops after `max_seconds` of timed blocks, at least one block).
"""

from __future__ import annotations

import sys

import json
import os
import platform
import time

# Run by path, this file's folder comes first on sys.path: drop it, so that no sibling module
# can shadow a dependency's import.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import numpy as np  # noqa: E402


def random_mdp_dataset(transitions: int, observation_dim: int, action_dim: int, episode_length: int, seed: int):
    import d3rlpy

    rng = np.random.default_rng(seed)
    episodes = max(1, transitions // episode_length)
    n = episodes * episode_length
    timeouts = np.zeros(n, np.float32)
    timeouts[episode_length - 1 :: episode_length] = 1.0
    return d3rlpy.dataset.MDPDataset(
        observations=rng.normal(size=(n, observation_dim)).astype(np.float32),
        actions=rng.uniform(-1, 1, size=(n, action_dim)).astype(np.float32),
        rewards=rng.normal(size=(n, 1)).astype(np.float32),
        terminals=np.zeros(n, np.float32),
        timeouts=timeouts,
        action_space=d3rlpy.ActionSpace.CONTINUOUS,
    )


def make_config(settings: dict):
    """The d3rlpy config matching offrl's settings for one algorithm, or None where d3rlpy has none."""
    from d3rlpy import algos
    from d3rlpy.models.encoders import VectorEncoderFactory

    name = settings["name"]
    batch_size = settings["batch_size"]

    def encoder(layer_norm: bool = False) -> VectorEncoderFactory:
        # d3rlpy's encoder is the hidden stack; its Q function / policy add the output layer, as
        # offrl's MLP(hidden_dims, output_dim) does.
        return VectorEncoderFactory(hidden_units=list(settings["hidden_dims"]), use_layer_norm=layer_norm)

    if name == "bc":
        return algos.BCConfig(batch_size=batch_size, learning_rate=3e-4, policy_type="deterministic", encoder_factory=encoder())
    if name == "td3bc":
        return algos.TD3PlusBCConfig(batch_size=batch_size, actor_encoder_factory=encoder(), critic_encoder_factory=encoder())
    if name == "iql":
        return algos.IQLConfig(batch_size=batch_size, actor_encoder_factory=encoder(), critic_encoder_factory=encoder(),
                               value_encoder_factory=encoder())
    if name in ("cql", "calql"):
        config_class = algos.CQLConfig if name == "cql" else algos.CalQLConfig
        # alpha_learning_rate 0: no Lagrange multiplier, as offrl's default (lagrange False).
        return config_class(batch_size=batch_size, actor_encoder_factory=encoder(), critic_encoder_factory=encoder(),
                            n_action_samples=settings["num_sampled_actions"], conservative_weight=settings["cql_weight"],
                            alpha_learning_rate=0.0)
    if name == "awac":
        return algos.AWACConfig(batch_size=batch_size, actor_encoder_factory=encoder(), critic_encoder_factory=encoder())
    if name == "rebrac":
        return algos.ReBRACConfig(batch_size=batch_size, actor_encoder_factory=encoder(settings.get("actor_layer_norm", False)),
                                  critic_encoder_factory=encoder(settings.get("critic_layer_norm", True)))
    if name == "dt":
        # The embedding width is the encoder's output: one hidden layer of it.
        return algos.DecisionTransformerConfig(
            batch_size=batch_size, context_size=settings["context_length"], num_heads=settings["num_heads"],
            num_layers=settings["num_layers"], max_timestep=settings["max_episode_steps"],
            encoder_factory=VectorEncoderFactory(hidden_units=[settings["embedding_dim"]]),
            attn_dropout=settings["dropout_rate"], resid_dropout=settings["dropout_rate"], embed_dropout=settings["dropout_rate"],
        )
    return None


def measure(settings: dict, dataset, threads: list[int], warmup: int, updates: int, blocks: int,
            max_seconds: float) -> dict:
    import torch

    config = make_config(settings)
    if config is None:
        return {"skipped": "no d3rlpy implementation"}
    algo = config.create(device="cpu:0")
    algo.build_with_dataset(dataset)
    sequence = settings["name"] == "dt"

    def draw():
        if sequence:
            return dataset.sample_trajectory_batch(settings["batch_size"], length=settings["context_length"])
        return dataset.sample_transition_batch(settings["batch_size"])

    draw()  # the sampler's first call builds caches; time the steady state
    started = time.perf_counter()
    batches = [draw() for _ in range(32)]
    sample_seconds = (time.perf_counter() - started) / len(batches)
    by_threads = {}
    step = 0
    for count in threads:
        torch.set_num_threads(count)
        for _ in range(warmup):
            algo.update(batches[step % len(batches)])
            step += 1
        best, spent = 0.0, 0.0
        per_block = max(1, updates // blocks)
        for _ in range(blocks):
            started = time.perf_counter()
            for _ in range(per_block):
                algo.update(batches[step % len(batches)])
                step += 1
            elapsed = time.perf_counter() - started
            best, spent = max(best, per_block / elapsed), spent + elapsed
            if spent > max_seconds:  # a thread count that crawls (a busy machine) is not worth waiting for
                break
        by_threads[str(count)] = best
    best_threads = max(by_threads, key=by_threads.get)
    return {"updates_per_second": by_threads[best_threads], "threads": int(best_threads), "by_threads": by_threads,
            "sample_seconds_per_batch": sample_seconds}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: d3rlpy_speed.py JSON_SETTINGS", file=sys.stderr)
        return 2
    request = json.loads(argv[0])
    import d3rlpy
    import torch

    d3rlpy.seed(request.get("seed", 0))
    started = time.perf_counter()
    dataset = random_mdp_dataset(request["transitions"], request["observation_dim"], request["action_dim"],
                                 request.get("episode_length", 1000), request.get("seed", 0))
    build_seconds = time.perf_counter() - started
    results = {}
    for settings in request["algorithms"]:
        results[settings["name"]] = measure(settings, dataset, request.get("threads", [1, 2]), request["warmup"],
                                            request["updates"], request.get("blocks", 3), request.get("max_seconds", 120.0))
    print(json.dumps({"d3rlpy": d3rlpy.__version__, "torch": torch.__version__, "python": platform.python_version(),
                      "dataset_seconds": build_seconds, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
