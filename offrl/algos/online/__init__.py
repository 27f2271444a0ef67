"""Online algorithms: SAC (behaviour agents for dataset generation) and RLPD (online with prior data)."""

from offrl.algos.online import rlpd, sac

__all__ = ["rlpd", "sac"]
