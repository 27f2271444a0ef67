"""The in-memory dataset: flat transition arrays plus episode boundaries.

`terminals[t]` means the MDP ended after transition t (the target does not bootstrap);
`timeouts[t]` means the episode was cut there by a time limit (the target bootstraps).
Either one ends an episode, and they may only be set on an episode's last transition.
`costs[t]` (optional, safe offline RL as in DSRL) is the constraint cost paid on transition t.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from offrl.errors import DatasetError
from offrl.types import Spec


@dataclass
class DatasetMetadata:
    """Where a dataset comes from and how to score policies against it."""

    name: str | None = None
    env_id: str | None = None
    ref_min_score: float | None = None
    ref_max_score: float | None = None
    action_low: np.ndarray | None = None
    action_high: np.ndarray | None = None
    source: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "env_id": self.env_id,
            "ref_min_score": self.ref_min_score,
            "ref_max_score": self.ref_max_score,
            "action_low": None if self.action_low is None else np.asarray(self.action_low).tolist(),
            "action_high": None if self.action_high is None else np.asarray(self.action_high).tolist(),
            "source": self.source,
            "provenance": self.provenance,
        }


@dataclass
class Dataset:
    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    episode_starts: np.ndarray
    metadata: DatasetMetadata = field(default_factory=DatasetMetadata)
    costs: np.ndarray | None = None  # per-transition constraint cost (DSRL's `costs`), None when unrecorded

    def __post_init__(self) -> None:
        self.observations = np.asarray(self.observations, dtype=np.float32)
        self.actions = np.asarray(self.actions, dtype=np.float32)
        self.rewards = np.asarray(self.rewards, dtype=np.float32)
        self.next_observations = np.asarray(self.next_observations, dtype=np.float32)
        self.terminals = np.asarray(self.terminals).astype(bool)
        self.timeouts = np.asarray(self.timeouts).astype(bool)
        self.episode_starts = np.asarray(self.episode_starts, dtype=np.int64)
        if self.costs is not None:
            self.costs = np.asarray(self.costs, dtype=np.float32)
        self.validate()

    # ----------------------------------------------------------------- shape and checks
    @property
    def where(self) -> str:
        return self.metadata.source or self.metadata.name or "the dataset"

    def validate(self) -> None:
        """Refuse inconsistent data with one sentence naming the field and what was expected."""
        where = self.where
        n = len(self.observations)
        if n == 0:
            raise DatasetError(f"{where} is empty: expected at least one transition.")
        if self.observations.ndim != 2:
            raise DatasetError(
                f"{where}: field 'observations' has shape {self.observations.shape}; "
                "expected a 2-D array (transitions, observation_dim)."
            )
        if self.actions.ndim != 2:
            raise DatasetError(
                f"{where}: field 'actions' has shape {self.actions.shape}; "
                "expected a 2-D array (transitions, action_dim)."
            )
        for name in ("actions", "rewards", "next_observations", "terminals", "timeouts"):
            length = len(getattr(self, name))
            if length != n:
                raise DatasetError(
                    f"{where}: field '{name}' has {length} rows but 'observations' has {n}; "
                    "expected equal lengths."
                )
        if self.next_observations.shape != self.observations.shape:
            raise DatasetError(
                f"{where}: field 'next_observations' has shape {self.next_observations.shape}; "
                f"expected {self.observations.shape} like 'observations'."
            )
        for name in ("rewards", "terminals", "timeouts"):
            if getattr(self, name).ndim != 1:
                raise DatasetError(f"{where}: field '{name}' must be 1-D, one value per transition.")
        for name in ("observations", "next_observations", "actions", "rewards"):
            values = getattr(self, name)
            if not np.all(np.isfinite(values)):
                row = int(np.argwhere(~np.isfinite(values.reshape(n, -1)))[0][0])
                raise DatasetError(
                    f"{where}: field '{name}' holds a NaN or infinite value at row {row}; "
                    "expected finite numbers."
                )
        if self.costs is not None:
            self._validate_costs(where, n)
        self._validate_episodes(where, n)
        self._validate_action_bounds(where)

    def _validate_costs(self, where: str, n: int) -> None:
        if self.costs.ndim != 1 or len(self.costs) != n:
            raise DatasetError(
                f"{where}: field 'costs' has shape {self.costs.shape} but 'observations' has {n} rows; "
                "expected one cost per transition."
            )
        if not np.all(np.isfinite(self.costs)):
            row = int(np.argmax(~np.isfinite(self.costs)))
            raise DatasetError(f"{where}: field 'costs' holds a NaN or infinite value at row {row}; expected finite numbers.")

    def _validate_episodes(self, where: str, n: int) -> None:
        starts = self.episode_starts
        if starts.ndim != 1 or len(starts) == 0 or starts[0] != 0:
            raise DatasetError(f"{where}: episode starts must begin with index 0.")
        if np.any(np.diff(starts) <= 0) or starts[-1] >= n:
            raise DatasetError(
                f"{where}: episode starts must be strictly increasing indices below {n}."
            )
        if np.any(self.terminals & self.timeouts):
            row = int(np.argmax(self.terminals & self.timeouts))
            raise DatasetError(
                f"{where}: transition {row} is marked both terminal and timeout; "
                "expected at most one of them."
            )
        is_last = np.zeros(n, dtype=bool)
        is_last[self.episode_ends - 1] = True
        inside = (self.terminals | self.timeouts) & ~is_last
        if np.any(inside):
            row = int(np.argmax(inside))
            raise DatasetError(
                f"{where}: transition {row} ends an episode (terminal or timeout) but is not the "
                "last step of its episode; expected episode boundaries after every end flag."
            )

    def _validate_action_bounds(self, where: str) -> None:
        low, high = self.metadata.action_low, self.metadata.action_high
        if low is None or high is None:
            return
        shape = self.actions.shape[1:]
        try:
            low = np.broadcast_to(np.asarray(low, np.float32), shape)
            high = np.broadcast_to(np.asarray(high, np.float32), shape)
        except (TypeError, ValueError):
            raise DatasetError(
                f"{where}: action bounds have shapes {np.shape(low)} and {np.shape(high)}; expected "
                f"one number or {shape[0]} numbers each (one per action dimension)."
            ) from None
        if np.any(np.isnan(low)) or np.any(np.isnan(high)) or np.any(low > high):
            raise DatasetError(
                f"{where}: action bounds low {low.tolist()} and high {high.tolist()} are not ordered "
                "numbers; expected low <= high in every dimension."
            )
        outside = (self.actions < low - 1e-5) | (self.actions > high + 1e-5)
        if np.any(outside):
            row, col = (int(i) for i in np.argwhere(outside)[0])
            raise DatasetError(
                f"{where}: field 'actions' row {row} dimension {col} is {self.actions[row, col]:.6g}, "
                f"outside the action space [{low[col]:.6g}, {high[col]:.6g}]; "
                "expected actions within bounds (or load with clip_actions=True)."
            )

    # ------------------------------------------------------------------ derived views
    @property
    def num_transitions(self) -> int:
        return len(self.observations)

    @property
    def num_episodes(self) -> int:
        return len(self.episode_starts)

    @property
    def episode_ends(self) -> np.ndarray:
        """Exclusive end index of each episode."""
        return np.append(self.episode_starts[1:], self.num_transitions)

    @property
    def episode_lengths(self) -> np.ndarray:
        return self.episode_ends - self.episode_starts

    def episode_returns(self) -> np.ndarray:
        return np.add.reduceat(self.rewards.astype(np.float64), self.episode_starts)

    def episode_costs(self) -> np.ndarray | None:
        """Each episode's summed cost (DSRL's cost return), or None without costs."""
        if self.costs is None:
            return None
        return np.add.reduceat(self.costs.astype(np.float64), self.episode_starts)

    @property
    def spec(self) -> Spec:
        return Spec(observation_dim=self.observations.shape[1], action_dim=self.actions.shape[1])

    def episode(self, index: int) -> dict[str, np.ndarray]:
        start, end = self.episode_starts[index], self.episode_ends[index]
        fields = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")
        if self.costs is not None:
            fields = (*fields, "costs")
        return {name: getattr(self, name)[start:end] for name in fields}

    # ---------------------------------------------------------------- constructors
    @classmethod
    def from_flat(
        cls,
        observations: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminals: np.ndarray,
        timeouts: np.ndarray,
        next_observations: np.ndarray | None = None,
        metadata: DatasetMetadata | None = None,
        costs: np.ndarray | None = None,
    ) -> "Dataset":
        """Build from D4RL-layout flat arrays.

        Episodes end after every terminal or timeout. Without `next_observations` (old D4RL
        files), the next observation is the following row; the last transition of each episode
        has no successor, so it is dropped, as D4RL's own `qlearning_dataset` does.
        """
        metadata = metadata or DatasetMetadata()
        observations = np.asarray(observations)
        terminals = np.asarray(terminals).astype(bool).reshape(-1)
        timeouts = np.asarray(timeouts).astype(bool).reshape(-1)
        rewards = np.asarray(rewards).reshape(-1)
        n = len(observations)
        where = metadata.source or metadata.name or "the dataset"
        columns = [("actions", actions), ("rewards", rewards), ("terminals", terminals), ("timeouts", timeouts)]
        if costs is not None:
            costs = np.asarray(costs).reshape(-1)
            columns.append(("costs", costs))
        for name, values in columns:
            if len(values) != n:
                raise DatasetError(
                    f"{where}: field '{name}' has {len(values)} rows but 'observations' has {n}; "
                    "expected equal lengths."
                )
        if n == 0:
            raise DatasetError(f"{where} is empty: expected at least one transition.")
        ends = terminals | timeouts
        if next_observations is None:
            # Row t's successor is row t+1, except after a timeout (row t+1 starts a new
            # episode) and on the last row: those rows have no known successor and are dropped,
            # as D4RL's own `qlearning_dataset` does. A terminal row needs no successor (the
            # target does not bootstrap), so it is kept with next_obs = obs.
            is_last_row = np.zeros(n, dtype=bool)
            is_last_row[-1] = True
            keep = terminals | ~(timeouts | is_last_row)
            next_obs = np.concatenate([observations[1:], observations[-1:]])
            next_obs[terminals] = observations[terminals]
            # A kept row whose successor was dropped now ends its episode by truncation.
            successor_dropped = np.append(~keep[1:], True)
            new_timeouts = keep & ~terminals & successor_dropped
            index = np.flatnonzero(keep)
            if len(index) == 0:
                raise DatasetError(f"{where} has no transition with a known next observation.")
            observations, next_observations = observations[index], next_obs[index]
            actions, rewards = np.asarray(actions)[index], rewards[index]
            costs = None if costs is None else costs[index]
            terminals, timeouts = terminals[index], new_timeouts[index]
            ends = terminals | timeouts
        starts = np.flatnonzero(np.concatenate([[True], ends[:-1]]))
        return cls(
            observations=observations,
            actions=actions,
            rewards=rewards,
            next_observations=next_observations,
            terminals=terminals,
            timeouts=timeouts,
            episode_starts=starts,
            metadata=metadata,
            costs=costs,
        )

    def replace(self, **changes: Any) -> "Dataset":
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        return (
            f"Dataset({self.metadata.name or self.where!r}, transitions={self.num_transitions}, "
            f"episodes={self.num_episodes}, obs_dim={self.spec.observation_dim}, "
            f"action_dim={self.spec.action_dim})"
        )
