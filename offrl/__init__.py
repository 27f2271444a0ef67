"""offrl: offline reinforcement learning from logged data to evaluated policies."""

from offrl.data.dataset import Dataset, DatasetMetadata
from offrl.train.policy import Policy, load_policy
from offrl.version import __version__

__all__ = ["Dataset", "DatasetMetadata", "Policy", "load_policy", "__version__"]
