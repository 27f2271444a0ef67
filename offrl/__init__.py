"""offrl: offline reinforcement learning from logged data to evaluated policies."""

__version__ = "0.1.0"

from offrl.data.dataset import Dataset, DatasetMetadata  # noqa: E402
from offrl.train.policy import Policy, load_policy  # noqa: E402

__all__ = ["Dataset", "DatasetMetadata", "Policy", "load_policy", "__version__"]
