"""Online algorithms: SAC and SAC-Lag (behaviour agents for dataset generation) and RLPD (online with prior data)."""

from offrl.algos.online import rlpd, sac, sac_lag

__all__ = ["rlpd", "sac", "sac_lag"]
