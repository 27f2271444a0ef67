"""Read tabular logs (CSV, Parquet) into a `Dataset` through a column mapping.

Logs from robots, plants or recommenders are tables: one row per step, some columns for the
observation, some for the action, one for the reward, and optionally an episode id, a terminal
flag (the process ended: no bootstrap) and a timeout flag (the log was cut: bootstrap). A
`ColumnMapping` names them, from flags or a small YAML file:

    observations: [x, y, "joint_*"]     # names or fnmatch patterns, in file column order
    actions: [torque]
    reward: r
    episode: run_id                      # optional: rows of one episode must be contiguous
    terminal: done                       # optional
    timeout: truncated                   # optional
    next_observations: ["next_*"]        # optional: else the next row of the same episode
    action_low: [-2.0]                   # optional: else the data's min / max per dimension
    action_high: [2.0]

Without `next_observations` the successor of a row is the next row of its episode; the last row
of an episode that is not terminal has no known successor and is dropped (D4RL's
`qlearning_dataset` rule, `Dataset.from_flat`). Every problem in a row is one sentence naming the
file, the row (CSV: its line number; Parquet: its 1-based row) and the column. Parquet needs
pyarrow (`pip install offrl[parquet]`).
"""

from __future__ import annotations

import csv
import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from offrl.data.dataset import Dataset, DatasetMetadata
from offrl.errors import DatasetError

TABULAR_SUFFIXES = (".csv", ".parquet", ".pq")
_TRUE = {"1", "true", "t", "yes", "y", "1.0"}
_FALSE = {"0", "false", "f", "no", "n", "0.0", ""}
_MAPPING_KEYS = ("observations", "actions", "reward", "episode", "terminal", "timeout", "next_observations",
                 "action_low", "action_high", "env_id", "name")


@dataclass(frozen=True)
class ColumnMapping:
    """Which columns hold what; names or fnmatch patterns (`obs_*`), expanded in file order."""

    observations: tuple[str, ...]
    actions: tuple[str, ...]
    reward: str
    episode: str | None = None
    terminal: str | None = None
    timeout: str | None = None
    next_observations: tuple[str, ...] | None = None
    action_low: tuple[float, ...] | None = None
    action_high: tuple[float, ...] | None = None
    env_id: str | None = None
    name: str | None = None
    source: str = field(default="the column flags", compare=False)  # where the mapping came from, for messages


def _names(value: Any, key: str, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) and v for v in value):
        raise DatasetError(f"{where}: '{key}' is {value!r}; expected a column name, a comma-separated list or a list of names.")
    return tuple(value)


def _bounds(value: Any, key: str, where: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [part for part in value.split(",") if part.strip()]
    if isinstance(value, (int, float)):
        value = [value]
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        numbers = ()
    if not numbers or not all(np.isfinite(numbers)):
        raise DatasetError(f"{where}: '{key}' is {value!r}; expected one number or one finite number per action dimension.")
    return numbers


def column_mapping(values: dict[str, Any], where: str = "the column flags") -> ColumnMapping:
    """A `ColumnMapping` from a dict (YAML file or flags); unknown keys and missing essentials are refused."""
    unknown = sorted(set(values) - set(_MAPPING_KEYS))
    if unknown:
        raise DatasetError(f"{where}: unknown key '{unknown[0]}'; expected only {', '.join(_MAPPING_KEYS)}.")
    for key in ("observations", "actions", "reward"):
        if values.get(key) in (None, "", []):
            flag = {"observations": "--obs-cols", "actions": "--action-cols", "reward": "--reward-col"}[key]
            raise DatasetError(f"{where}: the '{key}' columns are not given; expected {flag} or '{key}:' in the mapping file.")
    single = {}
    for key in ("reward", "episode", "terminal", "timeout", "env_id", "name"):
        value = values.get(key)
        if value is not None and not (isinstance(value, str) and value):
            raise DatasetError(f"{where}: '{key}' is {value!r}; expected one column name.")
        single[key] = value
    next_obs = values.get("next_observations")
    return ColumnMapping(
        observations=_names(values["observations"], "observations", where),
        actions=_names(values["actions"], "actions", where),
        next_observations=None if next_obs in (None, "", []) else _names(next_obs, "next_observations", where),
        action_low=_bounds(values.get("action_low"), "action_low", where),
        action_high=_bounds(values.get("action_high"), "action_high", where),
        source=where,
        **single,
    )


def read_mapping_file(path: str | os.PathLike) -> dict[str, Any]:
    """The YAML mapping file as a dict (see the module docstring for its keys)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"Mapping file '{path}' does not exist; expected a YAML file with observations, actions and reward keys.")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        line = getattr(getattr(error, "problem_mark", None), "line", None)
        at = f" at line {line + 1}" if line is not None else ""
        raise DatasetError(f"Mapping file '{path}' is not valid YAML{at}; expected 'key: value' lines.") from None
    if not isinstance(loaded, dict):
        raise DatasetError(f"Mapping file '{path}' holds {type(loaded).__name__}; expected a mapping of keys such as observations, actions, reward.")
    return loaded


# ------------------------------------------------------------------------------- reading
class _Table:
    """Columns of raw cells plus how to name a row in a message."""

    def __init__(self, path: Path, header: list[str], columns: dict[str, Any], kind: str):
        self.path, self.header, self.columns, self.kind = path, header, columns, kind
        self.num_rows = len(next(iter(columns.values()))) if columns else 0

    def row_label(self, index: int) -> str:
        # CSV: the file's line number (header is line 1); Parquet: the 1-based row.
        return f"line {index + 2}" if self.kind == "csv" else f"row {index + 1}"

    def expand(self, patterns: tuple[str, ...], key: str) -> list[str]:
        chosen: list[str] = []
        for pattern in patterns:
            matches = [name for name in self.header if fnmatch.fnmatchcase(name, pattern)]
            if not matches:
                raise DatasetError(
                    f"'{self.path}' has no column matching '{pattern}' (for {key}); expected one of its columns: "
                    f"{', '.join(self.header[:12])}{' ...' if len(self.header) > 12 else ''}."
                )
            chosen.extend(name for name in matches if name not in chosen)
        return chosen

    def numbers(self, name: str, allow_nan: bool = False, what: str = "a number") -> np.ndarray:
        cells = self.columns[name]
        if isinstance(cells, np.ndarray) and cells.dtype.kind in "biuf":
            values = cells.astype(np.float64)
        else:
            try:
                values = np.asarray(cells, dtype=np.float64)
            except (TypeError, ValueError):
                for index, cell in enumerate(cells):
                    try:
                        float(cell)
                    except (TypeError, ValueError):
                        raise DatasetError(
                            f"'{self.path}' {self.row_label(index)}, column '{name}': {cell!r} is not a number; expected {what}."
                        ) from None
                raise  # pragma: no cover - some cell failed as an array but not alone
        bad = ~np.isfinite(values)
        if bad.any() and not allow_nan:
            index = int(np.argmax(bad))
            raise DatasetError(
                f"'{self.path}' {self.row_label(index)}, column '{name}': the value is {values[index]} (or empty); "
                f"expected {what} (drop or fill that row)."
            )
        return values

    def flags(self, name: str) -> np.ndarray:
        cells = self.columns[name]
        if isinstance(cells, np.ndarray) and cells.dtype.kind in "biuf":
            values = cells.astype(np.float64)
            bad = ~np.isin(values, (0.0, 1.0))
            if bad.any():
                index = int(np.argmax(bad))
                raise DatasetError(f"'{self.path}' {self.row_label(index)}, column '{name}': {values[index]!r} is not a flag; expected 0/1 or true/false.")
            return values.astype(bool)
        result = np.zeros(len(cells), dtype=bool)
        for index, cell in enumerate(cells):
            text = str(cell).strip().lower() if cell is not None else ""
            if text in _TRUE:
                result[index] = True
            elif text not in _FALSE:
                raise DatasetError(f"'{self.path}' {self.row_label(index)}, column '{name}': {cell!r} is not a flag; expected 0/1 or true/false.")
        return result


def _read_csv(path: Path) -> _Table:
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file)
            header = next(reader, None)
            if not header:
                raise DatasetError(f"'{path}' is empty; expected a header line naming the columns, then one row per step.")
            header = [name.strip() for name in header]
            duplicated = sorted({name for name in header if header.count(name) > 1})
            if duplicated:
                raise DatasetError(f"'{path}' names column '{duplicated[0]}' more than once in its header; expected unique column names.")
            rows = []
            for row in reader:
                if not row:
                    continue  # blank line
                if len(row) != len(header):
                    raise DatasetError(
                        f"'{path}' line {reader.line_num} has {len(row)} fields but the header has {len(header)}; "
                        "expected every row to have one value per column."
                    )
                rows.append(row)
    except UnicodeDecodeError:
        raise DatasetError(f"'{path}' is not UTF-8 text; expected a CSV file.") from None
    except csv.Error as error:
        raise DatasetError(f"'{path}' is not a readable CSV file ({error}); expected comma-separated values.") from None
    if not rows:
        raise DatasetError(f"'{path}' has a header but no rows; expected at least one row per step.")
    columns = {name: [row[i] for row in rows] for i, name in enumerate(header)}
    return _Table(path, header, columns, "csv")


def _read_parquet(path: Path) -> _Table:
    try:
        import pyarrow.parquet as parquet  # an extra: only Parquet needs it
    except ImportError:
        raise DatasetError(f"Reading '{path}' needs pyarrow, which is not installed; expected `pip install offrl[parquet]`.") from None
    try:
        table = parquet.read_table(path)
    except Exception as error:  # noqa: BLE001 - pyarrow raises many types on bad files
        raise DatasetError(f"'{path}' could not be read as Parquet ({type(error).__name__}: {error}); expected a Parquet file.") from None
    if table.num_rows == 0:
        raise DatasetError(f"'{path}' has no rows; expected at least one row per step.")
    columns = {}
    for name in table.column_names:
        column = table.column(name)
        try:
            columns[name] = column.to_numpy(zero_copy_only=False)
        except Exception:  # noqa: BLE001 - nested types: keep Python objects for the messages
            columns[name] = np.asarray(column.to_pylist(), dtype=object)
        if columns[name].dtype.kind in "biuf" and column.null_count:  # nulls: NaN, caught per column below
            columns[name] = np.where(np.asarray(column.is_null()), np.nan, columns[name].astype(np.float64))
    return _Table(path, list(table.column_names), columns, "parquet")


def read_tabular(path: str | os.PathLike, mapping: ColumnMapping) -> Dataset:
    """Read the CSV or Parquet file at `path` with `mapping` into a `Dataset` (no env needed)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(f"Log file '{path}' does not exist; expected a .csv or .parquet file.")
    suffix = path.suffix.lower()
    if suffix not in TABULAR_SUFFIXES:
        raise DatasetError(f"Log file '{path}' has extension '{path.suffix}'; expected .csv or .parquet.")
    table = _read_csv(path) if suffix == ".csv" else _read_parquet(path)
    obs_names = table.expand(mapping.observations, "observations")
    action_names = table.expand(mapping.actions, "actions")
    singles = {key: getattr(mapping, key) for key in ("reward", "episode", "terminal", "timeout")}
    for key, name in singles.items():
        if name is not None and name not in table.columns:
            raise DatasetError(f"'{path}' has no column '{name}' (the {key} column of {mapping.source}); expected one of: {', '.join(table.header[:12])}.")
    observations = np.stack([table.numbers(name, what="a finite observation value") for name in obs_names], axis=1)
    actions = np.stack([table.numbers(name, what="a finite action") for name in action_names], axis=1)
    rewards = table.numbers(mapping.reward, what="a finite reward")
    next_observations = None
    if mapping.next_observations is not None:
        next_names = table.expand(mapping.next_observations, "next_observations")
        if len(next_names) != len(obs_names):
            raise DatasetError(
                f"'{path}': {len(next_names)} next-observation columns but {len(obs_names)} observation columns; "
                "expected one next-observation column per observation column."
            )
        next_observations = np.stack([table.numbers(name, what="a finite observation value") for name in next_names], axis=1)
    n = table.num_rows
    terminals = table.flags(mapping.terminal) if mapping.terminal else np.zeros(n, bool)
    timeouts = table.flags(mapping.timeout) if mapping.timeout else np.zeros(n, bool)
    both = terminals & timeouts
    if both.any():
        index = int(np.argmax(both))
        raise DatasetError(
            f"'{path}' {table.row_label(index)}: columns '{mapping.terminal}' and '{mapping.timeout}' are both set; "
            "expected at most one (terminal: the process ended; timeout: the log was cut)."
        )
    last = _episode_last_rows(table, mapping, terminals | timeouts)
    # The last row of each episode ends it: a timeout unless the terminal column says the process ended.
    timeouts = timeouts | (last & ~terminals)
    low, high, bounds_source = _action_bounds(table, mapping, action_names, actions)
    metadata = DatasetMetadata(
        name=mapping.name or path.stem, env_id=mapping.env_id, action_low=low, action_high=high, source=str(path),
        provenance={"format": table.kind, "columns": {"observations": obs_names, "actions": action_names,
                                                      "reward": mapping.reward, "episode": mapping.episode,
                                                      "terminal": mapping.terminal, "timeout": mapping.timeout,
                                                      "next_observations": None if next_observations is None else next_names},
                    "action_bounds": bounds_source, "rows": n},
    )
    dataset = Dataset.from_flat(observations, actions, rewards, terminals, timeouts,
                                next_observations=next_observations, metadata=metadata)
    if next_observations is None:
        metadata.provenance["rows_dropped_without_next_observation"] = n - dataset.num_transitions
    return dataset


def _episode_last_rows(table: _Table, mapping: ColumnMapping, ends: np.ndarray) -> np.ndarray:
    """Which rows end an episode; refuses an episode split apart and an end flag inside an episode."""
    n = table.num_rows
    last = np.zeros(n, bool)
    last[-1] = True
    if mapping.episode is None:
        return last | ends
    ids = [str(cell).strip() for cell in table.columns[mapping.episode]]
    for index, value in enumerate(ids):
        if value in ("", "nan", "None"):
            raise DatasetError(f"'{table.path}' {table.row_label(index)}, column '{mapping.episode}': the episode id is empty; expected an id on every row.")
    changes = np.array([ids[i] != ids[i + 1] for i in range(n - 1)] + [True])
    first_row: dict[str, int] = {}
    for index in np.flatnonzero(np.concatenate([[True], changes[:-1]])):
        episode = ids[index]
        if episode in first_row:
            raise DatasetError(
                f"'{table.path}' {table.row_label(int(index))}, column '{mapping.episode}': episode {episode!r} starts again after "
                f"other episodes (it began on {table.row_label(first_row[episode])}); expected each episode's rows to be "
                "contiguous (sort the file by episode, then step)."
            )
        first_row[episode] = int(index)
    inside = ends & ~changes
    if inside.any():
        index = int(np.argmax(inside))
        column = mapping.terminal if mapping.terminal and table.flags(mapping.terminal)[index] else mapping.timeout
        raise DatasetError(
            f"'{table.path}' {table.row_label(index)}, column '{column}': the episode ends here but episode "
            f"{ids[index]!r} continues on {table.row_label(index + 1)}; expected the end flag on an episode's last row only."
        )
    return changes


def _action_bounds(table: _Table, mapping: ColumnMapping, names: list[str], actions: np.ndarray):
    dim = actions.shape[1]
    if (mapping.action_low is None) != (mapping.action_high is None):
        raise DatasetError(f"{mapping.source}: only one of action_low / action_high is given; expected both (or neither: bounds from the data).")
    if mapping.action_low is None:
        low, high = actions.min(axis=0), actions.max(axis=0)
        high = np.where(high > low, high, low + 1e-6)  # a constant action dimension still needs a range
        return low.astype(np.float32), high.astype(np.float32), "the data's minimum and maximum per dimension"
    bounds = []
    for key, values in (("action_low", mapping.action_low), ("action_high", mapping.action_high)):
        if len(values) not in (1, dim):
            raise DatasetError(f"{mapping.source}: '{key}' has {len(values)} numbers but there are {dim} action columns; expected 1 or {dim}.")
        bounds.append(np.broadcast_to(np.asarray(values, np.float32), (dim,)).copy())
    low, high = bounds
    if np.any(low >= high):
        raise DatasetError(f"{mapping.source}: action_low {low.tolist()} is not below action_high {high.tolist()}; expected low < high in every dimension.")
    outside = (actions < low - 1e-6) | (actions > high + 1e-6)
    if outside.any():
        row, col = (int(i) for i in np.argwhere(outside)[0])
        raise DatasetError(
            f"'{table.path}' {table.row_label(row)}, column '{names[col]}': action {actions[row, col]:g} is outside "
            f"[{low[col]:g}, {high[col]:g}]; expected actions within the given bounds."
        )
    return low, high, "given"
