"""Safe offline RL: algorithms trained on datasets with per-step costs (DSRL layout), scored at a
target cost as DSRL does (offrl/evaluate/safe_scores.py)."""

from offrl.algos.safe import bc_all, bc_safe, bcq_lag, cdt, coptidice, cpq
