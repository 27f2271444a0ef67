"""The offline-to-online engine (see `engine.py`), split along its seams: `settings` (flags, the
algorithm's FINETUNE dict, the resolved engine settings), `batches` (offline and online rows mixed
in the compiled step), `loop` (the online loop), `records` (config, checkpoints, summary)."""

from offrl.train.finetune.batches import make_mixed_update, sample_mixed_batch
from offrl.train.finetune.engine import finetune, resume_finetune, train_with_prior_data
from offrl.train.finetune.records import FinetuneResult
from offrl.train.finetune.settings import (
    FINETUNE_KEYS,
    MODES,
    WSRL_WARMUP_STEPS,
    EngineSettings,
    FinetuneConfig,
    algorithm_finetune_settings,
    decayed_config,
    online_algorithm_config,
    reset_optimizers,
    resolve_settings,
)

__all__ = [
    "FINETUNE_KEYS", "MODES", "WSRL_WARMUP_STEPS", "EngineSettings", "FinetuneConfig", "FinetuneResult",
    "algorithm_finetune_settings", "decayed_config", "finetune", "make_mixed_update",
    "online_algorithm_config", "reset_optimizers", "resolve_settings", "resume_finetune", "sample_mixed_batch",
    "train_with_prior_data",
]
