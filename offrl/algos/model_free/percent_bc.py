"""%BC: behavioural cloning on the top X% of the dataset's episodes by return.

Filtered BC is a strong baseline on mixed-quality data (Chen et al. 2021, Decision Transformer,
Table 4 "%BC"; CORL `any_percent_bc.py` with frac = 0.1). The algorithm is plain BC; the
filtering is a data transform (`offrl.data.filtering.filter_top_episodes`) that the engine
applies because this Config has a `top_fraction` field: an algorithm never sees the dataset.

Ranking: episodes are ranked by their undiscounted return, as the Decision Transformer paper
defines %BC ("top X% of timesteps in the dataset, ordered by episode returns"). CORL's
any_percent_bc.py ranks by the return discounted from the episode's start with its `discount`
0.99 (keep_best_trajectories); `ranking_discount=0.99` reproduces that.
"""

from __future__ import annotations

from dataclasses import dataclass

from offrl.algos.model_free.bc import State, act, init, update  # noqa: F401  (the learning rule is BC's)
from offrl.algos.model_free import bc

NAME = "percent_bc"
DESCRIPTION = "Filtered behavioural cloning on the top fraction of episodes by return."
PAPER = "Chen et al. 2021, Decision Transformer (%BC baseline); settings from CORL any_percent_bc"


@dataclass(frozen=True)
class Config(bc.Config):
    top_fraction: float = 0.1  # CORL any_percent_bc: frac 0.1 (the "10% BC" of the D4RL tables)
    ranking_discount: float = 1.0  # DT paper's %BC: undiscounted return (CORL any_percent_bc.py: discount 0.99)
