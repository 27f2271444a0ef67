"""Each algorithm learns a real control task from a dataset the test makes itself.

Pendulum-v1 swing-up, from 8,000 transitions where half of the actions are uniform random and
the rest come from a noisy scripted controller. A random policy returns about -1200, the
dataset about -550 and the controller about -150. Any broken loss (wrong sign, wrong target,
misaligned batch) stays near the random policy's return. Small 64x64 networks keep it to
seconds per algorithm; the D4RL-size defaults are exercised in benchmarks/.
"""

from __future__ import annotations

import numpy as np
import pytest

from offrl.algos import get_algorithm
from offrl.train.offline import TrainConfig, train_offline

# Updates per algorithm: enough for each to pass the threshold with a margin on this task.
# IQL swings between about -600 and -130 until ~20k updates on this data, then settles.
BUDGETS = {
    "bc": 4_000, "td3bc": 10_000, "iql": 25_000, "cql": 6_000, "rebrac": 8_000,
    "sac_n": 10_000, "edac": 10_000, "percent_bc": 4_000,
    "awac": 6_000, "dt": 3_000,
}

# Config changes on top of 64x64 networks, each with its reason; everything else is the default.
OVERRIDES = {
    # 10 sampled actions make each update ~30 critic passes: 2 keep the penalty's sign and the test
    # in budget. The reference's actor lr 1e-4 needs more than 6k updates here; 3e-4 does not.
    "cql": {"num_sampled_actions": 2, "actor_learning_rate": 3e-4, "normalize_observations": True},
    # ReBRAC's batch of 1024 is for D4RL's 1M transitions; this dataset has 8,000.
    "rebrac": {"batch_size": 256},
    # N = 10 deep critics is for D4RL's narrow datasets; half of this one is uniform actions. SAC-N
    # (like CQL) needs standardised states here: unnormalised it was still near -800 at 8k updates.
    "sac_n": {"num_critics": 5, "normalize_observations": True},
    # Same setting for EDAC (with N = 3 it was at -640 after 10k updates in one run).
    "edac": {"num_critics": 5, "normalize_observations": True},
    # With 64x64 critics at the reference's 3e-4, AWAC sits at -700..-900 until the critic ranks
    # swing-up actions (~14k updates, two seeds); at 1e-3 four seeds are at -110..-150 by 4k.
    "awac": {"critic_learning_rate": 1e-3},
    # Two blocks of width 32 over 5-step windows keep the test short on 2 CPU cores; the reference's
    # lr 1e-4 after a 10k-step warmup is for 100k updates. One timestep embedding for every step:
    # with one per step, 40 episodes are memorised (train MSE 0.26, below the ~0.33 of a fit that
    # cannot tell random from scripted steps) and 3k updates end at -395/-490/-467 (seeds 0-2);
    # with a shared one, -383/-243/-341.
    "dt": {"hidden_dims": (32, 32), "context_length": 5, "learning_rate": 1e-3, "warmup_steps": 200,
           "max_episode_steps": 1},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BUDGETS))
def test_algorithm_learns_pendulum_swing_up(name, pendulum_dataset, pendulum_references, tmp_path):
    random_return, expert_return = pendulum_references
    algo = get_algorithm(name)
    steps = BUDGETS[name]
    config = algo.Config(**{"hidden_dims": (64, 64), **OVERRIDES.get(name, {})})
    dataset = pendulum_dataset
    result = train_offline(
        algo,
        config,
        dataset,
        TrainConfig(steps=steps, eval_every=steps, log_every=steps // 4, eval_episodes=10, seed=0),
        tmp_path / "run",
        progress=False,
    )
    final_return = result.summary["final_return"]
    # Far above random (-1200) and at least as good as the dataset's own average (-550).
    assert final_return > -500, f"{name} reached only {final_return:.0f} (random {random_return:.0f})"
    assert final_return > random_return + 600
    assert result.summary["final_normalized_score"] > 60.0
    assert np.isfinite(result.summary["updates_per_second"])


@pytest.mark.slow
def test_spot_needs_its_q_term_on_mostly_random_data(pendulum_mostly_random_dataset, tmp_path):
    """SPOT on Pendulum data where 80% of the actions are uniform random (mean return about -930).

    On the half-random data above, a SPOT whose actor ignores Q still passes (its VAE-constrained
    actor imitates the scripted half well enough), so SPOT is tested here instead. Measured with
    these settings: SPOT -467 (seed 0, the one tested), -431 (seed 1) and -621 (seed 2: SPOT varies
    across seeds here, and this test pins seed 0); the same SPOT with the actor's Q term zeroed
    -717; BC -839.
    """
    algo = get_algorithm("spot")
    # 4k VAE updates, then 8k TD3 updates; a 750x750 VAE is for D4RL-size data.
    config = algo.Config(hidden_dims=(64, 64), vae_steps=4_000, vae_hidden_dims=(64, 64))
    result = train_offline(algo, config, pendulum_mostly_random_dataset,
                           TrainConfig(steps=12_000, eval_every=12_000, log_every=3_000, eval_episodes=10, seed=0),
                           tmp_path / "run", progress=False)
    assert result.summary["final_return"] > -600, f"SPOT reached only {result.summary['final_return']:.0f}"
