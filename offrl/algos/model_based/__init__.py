"""Model-based offline RL: agents trained on a mix of dataset transitions and short rollouts of a
learned dynamics ensemble (offrl/models/), which the engine runs on the device
(offrl/train/model_rollouts.py) for any algorithm with a `rollout_settings` hook."""
