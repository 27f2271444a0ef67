"""Offline policy evaluation and selection, above the engines: FQE, WPDIS and weighted DR with
bootstrap intervals over episodes (`offrl ope`), choosing checkpoints offline (`offrl select`)."""
