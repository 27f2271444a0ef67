"""Learned dynamics: a probabilistic ensemble (`ensemble.py`), its training with a held-out split
and elites (`training.py`), a cache keyed by dataset fingerprint and config (`cache.py`), and the
device buffer that model rollouts fill (`buffer.py`). Used by the engines' model-rollout
component (offrl/train/model_rollouts.py) and by the model-based algorithms."""
