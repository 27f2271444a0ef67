"""The Constrained Decision Transformer's data augmentation (Liu et al. 2023, section 4.3; OSRL
`osrl/common/dataset.py` `augmentation`, `get_nearest_point`, `grid_filter`).

A return-conditioned policy only learns what the data shows: asked for a reward above anything
seen at a given cost, it has no example to follow and may trade safety for reward. CDT adds
relabelled copies of episodes that answer exactly that request: for a target (cost c, return r)
above the data's reward–cost Pareto frontier, "do what the best episode with cost <= c did". So
a high target return never outranks the target cost. The steps:

1. drop outlying episodes with OSRL's grid filter (cost x return cells; cells with <= 2 episodes
   are dropped, cells with more than 10 keep 10 at random);
2. the Pareto frontier of the remaining episodes (lower cost, higher return), fitted by a
   polynomial of `degree` in cost;
3. `fraction` x episodes targets: costs evenly spaced over the data's cost range, returns uniform
   between frontier(c) + `min_return_gap` and `max_return`;
4. each target associated with the nearest episode (Euclidean in (cost, return)) whose cost is
   <= the target cost; when several targets pick one episode, the later ones go instead to an
   episode with cost <= it and return >= its return - `max_return_decrease`, drawn with
   probability 1 / (distance + `beta`);
5. the associated episode copied with its return-to-go and cost-to-go shifted so that its first
   step's equal the target (every later step by the same constant).

Differences from OSRL, said plainly: the grid filter is skipped when it would leave fewer than 3
episodes (small datasets; OSRL's DSRL sets hold thousands of episodes), and the polynomial degree
is lowered to (Pareto points - 1) when there are too few points for it; OSRL pairs the spread
repeats with targets by list position (so a copy's target cost can be below its episode's cost),
here each target keeps its own pick.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GRID_COST_BINS, GRID_RETURN_BINS = 10, 50  # OSRL dataset.py augmentation: cbins, rbins
GRID_MAX_PER_CELL, GRID_MIN_PER_CELL = 10, 2  # OSRL dataset.py augmentation: max_npb, min_npb


@dataclass(frozen=True)
class AugmentedEpisodes:
    """Which episode each augmented copy repeats, and its first step's target (cost, return)."""

    episodes: np.ndarray  # (n,) int: index into the dataset's episodes
    target_costs: np.ndarray  # (n,) the copy's cost-to-go at its first step
    target_returns: np.ndarray  # (n,) the copy's return-to-go at its first step


def pareto_mask(costs: np.ndarray, returns: np.ndarray) -> np.ndarray:
    """True for the episodes no other episode dominates (cost <= and return >=, one strictly)."""
    costs, returns = np.asarray(costs, np.float64), np.asarray(returns, np.float64)
    no_worse = (costs[None, :] <= costs[:, None]) & (returns[None, :] >= returns[:, None])
    better = (costs[None, :] < costs[:, None]) | (returns[None, :] > returns[:, None])
    return ~(no_worse & better).any(axis=1)


def grid_filter(costs: np.ndarray, returns: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of the episodes OSRL's grid filter keeps (sorted)."""
    def cells(values, bins):
        low, high = values.min(), values.max()
        step = (high - low) / bins
        return np.zeros(len(values), np.int64) if step == 0 else np.floor((values - low) / step).astype(np.int64)

    cell = cells(costs, GRID_COST_BINS) * (GRID_RETURN_BINS + 1) + cells(returns, GRID_RETURN_BINS)
    kept = []
    for value in np.unique(cell):
        members = np.flatnonzero(cell == value)
        if len(members) <= GRID_MIN_PER_CELL:
            continue
        kept.extend(rng.choice(members, GRID_MAX_PER_CELL, replace=False) if len(members) > GRID_MAX_PER_CELL else members)
    return np.sort(np.asarray(kept, np.int64))


def nearest_safer_episodes(costs: np.ndarray, returns: np.ndarray, target_costs: np.ndarray, target_returns: np.ndarray,
                           max_return_decrease: float, beta: float, rng: np.random.Generator) -> np.ndarray:
    """Step 4 of the module docstring: an episode index per target (indices into `costs`)."""
    chosen = []
    for cost, value in zip(target_costs, target_returns):
        allowed = np.flatnonzero(costs <= cost)
        if len(allowed) == 0:  # a target below every episode's cost: the cheapest episode
            allowed = np.flatnonzero(costs == costs.min())
        distance = np.hypot(costs[allowed] - cost, returns[allowed] - value)
        chosen.append(int(allowed[np.argmin(distance)]))
    # a repeated pick keeps its target but takes an episode near the picked one (OSRL spreads repeats
    # the same way; here each target stays paired with an episode whose cost is <= its own)
    picked, seen = [], set()
    for nearest in chosen:
        episode = nearest
        if nearest in seen:
            near = np.flatnonzero((costs <= costs[nearest]) & (returns >= returns[nearest] - max_return_decrease))
            weights = 1.0 / (np.hypot(costs[near] - costs[nearest], returns[near] - returns[nearest]) + beta)
            episode = int(rng.choice(near, p=weights / weights.sum()))
        seen.add(nearest)
        picked.append(episode)
    return np.asarray(picked, np.int64)


def augment_episodes(episode_costs: np.ndarray, episode_returns: np.ndarray, fraction: float, degree: int,
                     min_return_gap: float, max_return: float | None, max_return_decrease: float | None, beta: float,
                     seed: int) -> AugmentedEpisodes:
    """The augmented copies for episodes with these cost and reward returns (module docstring).

    `max_return` None: the data's best episode return; `max_return_decrease` None: a tenth of the
    data's range of episode returns (OSRL's values are absolute per task, e.g. 300 for Hopper's
    returns of about 0-1,800: cdt_configs.py CDTHopperVelocityConfig)."""
    costs, returns = np.asarray(episode_costs, np.float64), np.asarray(episode_returns, np.float64)
    rng = np.random.default_rng(seed)
    count = int(fraction * len(costs))
    if count == 0:
        empty = np.zeros(0)
        return AugmentedEpisodes(np.zeros(0, np.int64), empty, empty)
    candidates = grid_filter(costs, returns, rng)
    if len(candidates) < 3:
        candidates = np.arange(len(costs))
    kept_costs, kept_returns = costs[candidates], returns[candidates]
    front = pareto_mask(kept_costs, kept_returns)
    front_costs, front_returns = kept_costs[front], kept_returns[front]
    fit_degree = min(degree, len(np.unique(front_costs)) - 1)
    if degree == 0:  # OSRL's deg 0 (flat frontier tasks): np.polyfit(..., 0), the frontier returns' mean
        frontier = np.poly1d([front_returns.mean()])
    elif fit_degree > 0:
        frontier = np.poly1d(np.polyfit(front_costs, front_returns, fit_degree))
    else:  # a frontier of one cost: nothing to fit a slope to
        frontier = np.poly1d([front_returns.max()])
    target_costs = np.linspace(kept_costs.min(), kept_costs.max(), count)
    ceiling = float(returns.max()) if max_return is None else float(max_return)
    # OSRL: np.random.uniform(frontier + min_reward, max_reward), which draws between the bounds in either order
    floor = frontier(target_costs) + min_return_gap
    target_returns = rng.uniform(np.minimum(floor, ceiling), np.maximum(floor, ceiling))
    decrease = 0.1 * float(returns.max() - returns.min()) if max_return_decrease is None else float(max_return_decrease)
    picked = nearest_safer_episodes(kept_costs, kept_returns, target_costs, target_returns, decrease, beta, rng)
    return AugmentedEpisodes(episodes=candidates[picked], target_costs=target_costs, target_returns=target_returns)
