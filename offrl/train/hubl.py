"""Heuristic blending (HUBL; Geng et al. 2023, "Improving Offline RL by Blending Heuristics"),
for any algorithm that bootstraps with a `discount` (`--hubl λ`).

HUBL blends a Monte-Carlo heuristic h into the bootstrap: with h(s') the return of the logged
behaviour from s', it trains the unchanged algorithm on the relabelled problem

    r~ = r + γ λ (1 - done) h(s'),    γ~ = γ (1 - λ),

so that r~ + γ~ V(s') = r + γ [(1 - λ) V(s') + λ h(s')] (the paper's Eq. for a constant λ).
h(s'_t) is the discounted return-to-go G_{t+1} of the same episode (offrl.data.returns, with the
algorithm's discount, on the rewards it trains on, i.e. after the normaliser's scale). At the
last step of an episode cut by a time limit s' has no observed future; as in
offrl.data.returns (and Cal-QL's reference) the unobserved tail counts as 0 there.

The engine relabels the rewards once (`blend_rewards`) and hands the algorithm a copy of its
config with the blended discount (`blended_config`); no algorithm file knows about HUBL.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from offrl.data.returns import returns_to_go
from offrl.errors import ConfigError


def check_hubl(blend: float, algo_config: Any, algo_name: str) -> None:
    if not (isinstance(blend, (int, float)) and math.isfinite(blend) and 0.0 <= blend < 1.0):
        raise ConfigError(f"--hubl is {blend}; expected a blending factor λ in [0, 1).")
    if blend > 0 and not hasattr(algo_config, "discount"):
        raise ConfigError(f"--hubl needs an algorithm that bootstraps with a discount; {algo_name} has none.")


def next_state_heuristic(rewards: np.ndarray, episode_starts: np.ndarray, terminals: np.ndarray,
                         discount: float) -> np.ndarray:
    """h(s'_t) = G_{t+1} within the episode; 0 after an episode's last step (float64)."""
    returns = returns_to_go(rewards, episode_starts, terminals, discount).astype(np.float64)
    following = np.append(returns[1:], 0.0)
    last = np.zeros(len(rewards), bool)
    last[np.append(np.asarray(episode_starts[1:], np.int64) - 1, len(rewards) - 1)] = True
    return np.where(last, 0.0, following)


def blend_rewards(rewards: np.ndarray, dones: np.ndarray, episode_starts: np.ndarray, terminals: np.ndarray,
                  discount: float, blend: float) -> np.ndarray:
    """r + γ λ (1 - done) h(s') for every transition (float32)."""
    heuristic = next_state_heuristic(rewards, episode_starts, terminals, discount)
    blended = np.asarray(rewards, np.float64) + discount * blend * (1.0 - np.asarray(dones, np.float64)) * heuristic
    return blended.astype(np.float32)


def blended_config(algo_config: Any, blend: float) -> Any:
    """The algorithm's config with the discount γ (1 - λ) (unchanged for λ = 0)."""
    if not blend:
        return algo_config
    return dataclasses.replace(algo_config, discount=algo_config.discount * (1.0 - blend))
