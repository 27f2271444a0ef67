"""Model-free offline algorithms: behaviour cloning, actor-critic with a behaviour constraint,
conservative and ensemble critics, advantage-weighted regression."""

from offrl.algos.model_free import awac, bc, calql, cql, edac, iql, percent_bc, rebrac, sac_n, spot, td3_bc

__all__ = ["awac", "bc", "calql", "cql", "edac", "iql", "percent_bc", "rebrac", "sac_n", "spot", "td3_bc"]
