"""Read and write Minari datasets, offrl's on-disk interchange format.

Minari stores each episode with T+1 observations (the last one is the observation the episode
ended in) and T actions, rewards, terminations and truncations. offrl's flat layout takes
`observations[t]` and `observations[t + 1]` as a transition's observation and next observation.

`write_minari` writes datasets that `minari.load_dataset` opens unchanged. It uses Minari's
storage API (`MinariStorage.new`, `update_metadata`, `update_episodes`: what
`minari.create_dataset_from_buffers` does inside) so that it can write into a temporary
directory of any root and rename it into place, never builds or rolls out an environment, and
stores reference scores even when the environment is not a registered Gymnasium id.
offrl's own metadata (bounds, provenance) goes in an extra `offrl_metadata` key of Minari's
`metadata.json`, which Minari keeps as it is.

Per-step costs (safe offline RL) are stored as the per-step info `cost`, Safety-Gymnasium's
name for it, laid out as Minari's `DataCollector` lays infos out: T+1 entries, the first from
`reset` (0.0), then the cost of each step. Episodes without a `cost` info read as no costs.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import minari
import numpy as np
from minari.data_collector import EpisodeBuffer
from minari.dataset.minari_dataset import parse_dataset_id
from minari.dataset.minari_storage import MinariStorage
from minari.namespace import NAMESPACE_METADATA_FILENAME
from minari.storage import get_dataset_path

from offrl.data.d4rl_io import to_jsonable
from offrl.data.dataset import Dataset, DatasetMetadata
from offrl.envs.factory import check_env_id, env_id_with_overrides
from offrl.errors import ConfigError, DatasetError

OFFRL_METADATA_KEY = "offrl_metadata"
COST_INFO_KEY = "cost"  # Safety-Gymnasium's info key for a step's constraint cost
_TEMP_PREFIX = ".offrl-tmp-"
# Minari metadata copied into `provenance["minari"]` on read (when present).
_MINARI_INFO_KEYS = (
    "minari_version",
    "dataset_size",
    "total_episodes",
    "total_steps",
    "data_format",
    "author",
    "author_email",
    "algorithm_name",
    "code_permalink",
    "description",
    "requirements",
    "num_episodes_average_score",
    "combined_datasets",
)
# Minari metadata fields that `write_minari` fills from provenance (top level or "minari").
_MINARI_WRITABLE_KEYS = ("algorithm_name", "code_permalink", "author", "author_email", "requirements")


# --------------------------------------------------------------------------------- reading
def read_minari(path_or_id: str | os.PathLike, clip_actions: bool = False) -> Dataset:
    """Read a Minari dataset from its directory or from a locally available dataset id.

    `path_or_id` is either a dataset directory (holding `data/metadata.json`, as Minari writes
    them under `$MINARI_DATASETS_PATH/<dataset_id>/`) or a dataset id that
    `minari.load_dataset(..., download=False)` finds locally; nothing is downloaded.
    Observations are a flat (1-D) Box, or a Dict of flat Boxes (goal-conditioned sets such as
    D4RL/antmaze: `observation`, `achieved_goal`, `desired_goal`), which is read as one vector,
    its keys concatenated in the Dict's order, as `gymnasium.spaces.flatten` and offrl's evaluation
    envs (`offrl.envs.factory.flatten_dict_observations`) order them. Actions are a flat Box.
    The evaluation env is Minari's `eval_env_spec` (else `env_spec`), its id carrying the
    constructor arguments that differ from the registered env (`env_id_with_overrides`). A step that is both
    terminated and truncated counts as terminal (the MDP ended: no bootstrap).
    With `clip_actions`, actions are clipped into the action space's (finite) bounds.
    """
    mds, source = _open(path_or_id)
    try:
        meta = dict(mds.storage.metadata)
    except Exception as error:  # noqa: BLE001 - any failure here is a malformed dataset
        raise _unreadable(source, error) from error
    observation_keys = _observation_keys(mds.observation_space, source)
    _require_flat_box(mds.action_space, "action", source)
    obs_dim = int(gym.spaces.flatdim(mds.observation_space))
    action_dim = int(mds.action_space.shape[0])

    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "next", "act", "rew", "term", "trunc", "cost")}
    lengths: list[int] = []
    skipped_empty = 0
    both_flags = 0
    try:
        for episode in mds.iterate_episodes():
            steps = len(episode.rewards)
            observations = _flat_observations(episode.observations, observation_keys, steps)
            actions = np.asarray(episode.actions)
            if steps == 0:
                skipped_empty += 1
                continue
            if observations.shape != (steps + 1, obs_dim):
                raise DatasetError(
                    f"Minari dataset '{source}': episode {episode.id} has observations of shape "
                    f"{observations.shape} for {steps} steps; expected ({steps + 1}, {obs_dim}) "
                    "(Minari stores the final observation too)."
                )
            if actions.shape != (steps, action_dim):
                raise DatasetError(
                    f"Minari dataset '{source}': episode {episode.id} has actions of shape "
                    f"{actions.shape}; expected ({steps}, {action_dim})."
                )
            for name, values in (("terminations", episode.terminations), ("truncations", episode.truncations)):
                if np.shape(values) != (steps,):
                    raise DatasetError(
                        f"Minari dataset '{source}': episode {episode.id} has {name} of shape "
                        f"{np.shape(values)}; expected ({steps},), one flag per step."
                    )
            terminations = np.asarray(episode.terminations).astype(bool)
            truncations = np.asarray(episode.truncations).astype(bool)
            both_flags += int(np.count_nonzero(terminations & truncations))
            parts["obs"].append(observations[:-1])
            parts["next"].append(observations[1:])
            parts["act"].append(actions)
            parts["rew"].append(np.asarray(episode.rewards).reshape(steps))
            parts["term"].append(terminations)
            parts["trunc"].append(truncations & ~terminations)
            parts["cost"].append(_episode_costs(episode, steps, source))
            lengths.append(steps)
    except DatasetError:
        raise
    except Exception as error:  # noqa: BLE001 - h5py/minari raise many types on bad files
        raise _unreadable(source, error) from error
    if not lengths:
        raise DatasetError(f"Minari dataset '{source}' is empty: expected at least one episode with one step.")

    offrl_meta = meta.get(OFFRL_METADATA_KEY)
    offrl_meta = offrl_meta if isinstance(offrl_meta, dict) else {}
    if "action_low" in offrl_meta and "action_high" in offrl_meta:
        low, high = offrl_meta["action_low"], offrl_meta["action_high"]
        try:
            low = None if low is None else np.asarray(low, dtype=np.float32).reshape(action_dim)
            high = None if high is None else np.asarray(high, dtype=np.float32).reshape(action_dim)
        except (TypeError, ValueError):
            raise DatasetError(
                f"Minari dataset '{source}' has offrl action bounds {low!r} and {high!r}; expected "
                f"{action_dim} numbers each, one per action dimension."
            ) from None
    else:
        low, high = _finite_bounds(mds.action_space)

    provenance = dict(offrl_meta.get("provenance") or {})
    provenance["minari"] = _minari_info(meta)
    if observation_keys is not None:
        provenance["minari"]["observation_keys"] = {key: int(gym.spaces.flatdim(mds.observation_space[key]))
                                                     for key in observation_keys}
    if skipped_empty:
        provenance["minari"]["skipped_empty_episodes"] = skipped_empty
    if both_flags:
        provenance["minari"]["steps_both_terminated_and_truncated"] = both_flags

    actions = np.concatenate(parts["act"]).astype(np.float32)
    if clip_actions and low is not None and high is not None:
        clipped = np.clip(actions, low, high)
        provenance["clipped_action_values"] = int(np.count_nonzero(clipped != actions))
        actions = clipped

    metadata = DatasetMetadata(
        name=meta.get("dataset_id"),
        env_id=offrl_meta.get("env_id") or evaluation_env_id(meta) or (mds.env_spec.id if mds.env_spec is not None else None),
        ref_min_score=_optional_float(meta.get("ref_min_score"), "ref_min_score", source),
        ref_max_score=_optional_float(meta.get("ref_max_score"), "ref_max_score", source),
        action_low=low,
        action_high=high,
        source=source,
        provenance=to_jsonable(provenance),
    )
    return Dataset(
        observations=np.concatenate(parts["obs"]),
        actions=actions,
        rewards=np.concatenate(parts["rew"]),
        next_observations=np.concatenate(parts["next"]),
        terminals=np.concatenate(parts["term"]),
        timeouts=np.concatenate(parts["trunc"]),
        episode_starts=np.concatenate([[0], np.cumsum(lengths)[:-1]]),
        metadata=metadata,
        costs=_joined_costs(parts["cost"], source),
    )


def _episode_costs(episode: Any, steps: int, source: str) -> np.ndarray | None:
    """The episode's per-step costs from its `cost` info (T+1 entries as collected, or T), or None."""
    infos = episode.infos if isinstance(episode.infos, dict) else {}
    if COST_INFO_KEY not in infos:
        return None
    values = np.asarray(infos[COST_INFO_KEY])
    if values.ndim != 1 or len(values) not in (steps, steps + 1) or values.dtype.kind not in "biuf":
        raise DatasetError(
            f"Minari dataset '{source}': episode {episode.id} has info '{COST_INFO_KEY}' of shape {values.shape} "
            f"for {steps} steps; expected {steps + 1} numbers (reset, then one per step)."
        )
    return values[-steps:].astype(np.float32)


def _joined_costs(parts: list[np.ndarray | None], source: str) -> np.ndarray | None:
    present = [values is not None for values in parts]
    if not any(present):
        return None
    if not all(present):
        raise DatasetError(
            f"Minari dataset '{source}': {present.count(False)} of {len(parts)} episodes have no info "
            f"'{COST_INFO_KEY}'; expected costs on every episode or on none."
        )
    return np.concatenate(parts)


def _open(path_or_id: str | os.PathLike) -> tuple[minari.MinariDataset, str]:
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        if (path / "data" / "metadata.json").is_file():
            data_path = path / "data"
        elif path.name == "data" and (path / "metadata.json").is_file():
            data_path = path
        else:
            data_path = None
        if data_path is not None:
            source = str(data_path.parent)
            try:
                return minari.MinariDataset(data_path), source
            except Exception as error:  # noqa: BLE001
                raise _unreadable(source, error) from error
    elif path.exists():
        raise DatasetError(
            f"'{path}' is a file; expected a Minari dataset directory or the id of a local Minari dataset."
        )
    # Not a dataset directory: a dataset id (a directory of the same relative name, such as
    # a package folder, does not shadow the id).
    dataset_id = str(path_or_id)
    try:
        mds = minari.load_dataset(dataset_id, download=False)
    except FileNotFoundError:
        if path.is_dir():
            raise DatasetError(
                f"Directory '{path}' is not a Minari dataset directory; expected it to contain "
                "'data/metadata.json' and the episode data."
            ) from None
        raise DatasetError(
            f"Minari dataset '{dataset_id}' is neither a directory nor the id of a dataset under "
            f"'{get_dataset_path()}'; expected a local Minari dataset (offrl does not download)."
        ) from None
    except Exception as error:  # noqa: BLE001
        raise _unreadable(dataset_id, error) from error
    return mds, str(Path(mds.storage.data_path).parent)


def _unreadable(source: str, error: Exception) -> DatasetError:
    return DatasetError(
        f"Minari dataset '{source}' could not be read ({type(error).__name__}: {error}); "
        "expected an intact Minari dataset that this Minari version supports."
    )


def _observation_keys(space: gym.Space, source: str) -> list[str] | None:
    """None for a flat Box; the keys of a Dict whose every entry is a flat Box; else refused."""
    if isinstance(space, gym.spaces.Dict):
        for key, entry in space.spaces.items():
            _require_flat_box(entry, f"observation['{key}']", source)
        return list(space.spaces)
    _require_flat_box(space, "observation", source)
    return None


def _flat_observations(observations: Any, keys: list[str] | None, steps: int) -> np.ndarray:
    if keys is None:
        return np.asarray(observations)
    if not isinstance(observations, dict):
        return np.asarray(observations)  # the shape check that follows names the problem
    return np.concatenate([np.asarray(observations[key], np.float32).reshape(steps + 1, -1) for key in keys], axis=1)


def evaluation_env_id(meta: dict[str, Any]) -> str | None:
    """The id of Minari's evaluation env (else the collection env), with its non-default arguments."""
    for key in ("eval_env_spec", "env_spec"):
        env_id = env_id_with_overrides(meta.get(key))
        if env_id is not None:
            return env_id
    return None


def _require_flat_box(space: gym.Space, kind: str, source: str) -> None:
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise DatasetError(
            f"Minari dataset '{source}' has {kind} space {space}; offrl supports only flat (1-D) "
            f"Box {kind} spaces, not Dict, Tuple, discrete or image spaces."
        )


def _finite_bounds(space: gym.spaces.Box) -> tuple[np.ndarray | None, np.ndarray | None]:
    low, high = np.asarray(space.low, np.float32), np.asarray(space.high, np.float32)
    if np.all(np.isfinite(low)) and np.all(np.isfinite(high)):
        return low, high
    return None, None


def _optional_float(value: Any, key: str, source: str) -> float | None:
    if value is None:
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise DatasetError(
            f"Minari dataset '{source}' has metadata '{key}' = {value!r}; expected a number."
        ) from None
    return result


def _minari_info(meta: dict[str, Any]) -> dict[str, Any]:
    info = {key: meta[key] for key in _MINARI_INFO_KEYS if meta.get(key) is not None}
    for key in ("author", "author_email"):
        if isinstance(info.get(key), (set, frozenset, list, tuple)):
            info[key] = sorted(str(v) for v in info[key])
    eval_spec = meta.get("eval_env_spec")
    if isinstance(eval_spec, str):
        try:
            info["eval_env_id"] = json.loads(eval_spec)["id"]
        except (ValueError, KeyError, TypeError):
            pass
    return to_jsonable(info)


# --------------------------------------------------------------------------------- writing
def write_minari(
    dataset: Dataset,
    dataset_id: str,
    root: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> Path:
    """Write `dataset` as the Minari dataset `dataset_id` under `root`; return its directory.

    `root` defaults to Minari's own root (`$MINARI_DATASETS_PATH`, else `~/.minari/datasets`);
    `minari.load_dataset(dataset_id)` opens the result with that root. Reference scores go
    where `minari.get_normalized_score` reads them. The data is written into a hidden temporary
    directory of `root` and renamed into place, so a crash never leaves a half-written dataset
    under the final name. An existing dataset is refused unless `overwrite`.

    An episode whose `next_observations[t]` differs from `observations[t + 1]` cannot be one
    Minari episode; it is split there into two (the first ends with neither flag set) and a
    warning says so. Every transition is kept exactly.
    """
    try:
        parse_dataset_id(dataset_id)
    except (ValueError, TypeError):
        raise DatasetError(
            f"Minari dataset id {dataset_id!r} is malformed; expected '(namespace/)name-vN', "
            "for example 'offrl/hopper-medium-v0'."
        ) from None
    root_path = Path(root).expanduser() if root is not None else get_dataset_path()
    final = root_path / dataset_id
    _check_target(final, dataset_id, overwrite)

    meta = dataset.metadata
    obs_dim, action_dim = dataset.spec.observation_dim, dataset.spec.action_dim
    observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(obs_dim,), dtype=np.float32)
    if meta.action_low is not None and meta.action_high is not None:
        low = np.broadcast_to(np.asarray(meta.action_low, np.float32), (action_dim,)).copy()
        high = np.broadcast_to(np.asarray(meta.action_high, np.float32), (action_dim,)).copy()
        action_space = gym.spaces.Box(low, high, dtype=np.float32)
    else:
        low = high = None
        action_space = gym.spaces.Box(-np.inf, np.inf, shape=(action_dim,), dtype=np.float32)

    buffers, splits = _episode_buffers(dataset)
    if splits:
        warnings.warn(
            f"{dataset.where}: {splits} episode(s) have a next observation that differs from the "
            "following observation; they are written as separate Minari episodes.",
            stacklevel=2,
        )
    minari_meta = _minari_metadata(dataset, dataset_id, low, high, splits)

    root_path.mkdir(parents=True, exist_ok=True)
    temp = root_path / f"{_TEMP_PREFIX}{uuid.uuid4().hex}"
    try:
        temp.mkdir()
        storage = MinariStorage.new(
            temp / "data",
            observation_space=observation_space,
            action_space=action_space,
            env_spec=_registered_spec(meta.env_id),
            data_format="hdf5",
        )
        storage.update_metadata(minari_meta)
        storage.update_episodes(buffers)
        minari.MinariDataset(storage)  # refuse to install something Minari cannot open
        _ensure_namespaces(root_path, dataset_id)
        _install(temp, final, dataset_id, overwrite)
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)
    return final


def _check_target(final: Path, dataset_id: str, overwrite: bool) -> None:
    """Refuse an existing dataset unless `overwrite`, and anything at `final` that is not a dataset."""
    if not (final.exists() or final.is_symlink()):
        return
    if not overwrite:
        raise DatasetError(
            f"Minari dataset '{dataset_id}' already exists at '{final}'; expected a new dataset id "
            "(or overwrite=True to replace it)."
        )
    if not (final / "data").is_dir() and (final.exists() or final.is_symlink()):  # not merely moved away meanwhile
        raise DatasetError(
            f"'{final}' exists but is not a Minari dataset directory; refusing to replace it with "
            f"dataset '{dataset_id}'."
        )


_INSTALL_ATTEMPTS = 20  # rounds against writers that keep replacing the same dataset concurrently


def _install(temp: Path, final: Path, dataset_id: str, overwrite: bool) -> None:
    """Rename the finished `temp` to `final`. Another writer may create, replace or move `final`
    at any moment: the loser of a race gets the one-sentence DatasetError ("already exists"),
    or, with `overwrite`, replaces the winner's dataset; never a bare OSError. An old dataset is
    moved aside (renamed) before ours goes in and deleted once ours is in place."""
    final.parent.mkdir(parents=True, exist_ok=True)
    set_aside: list[Path] = []
    installed = False
    try:
        for _ in range(_INSTALL_ATTEMPTS):
            try:
                os.rename(temp, final)  # atomic; fails if `final` is a non-empty directory or a file
                installed = True
                return
            except OSError as error:
                if not (final.exists() or final.is_symlink()):
                    if not temp.is_dir():
                        raise DatasetError(
                            f"Minari dataset '{dataset_id}' could not be moved into place at '{final}' "
                            f"({error}); expected its temporary copy '{temp}' to still exist."
                        ) from error
                    continue  # moved away meanwhile: try again
            _check_target(final, dataset_id, overwrite)  # "already exists" unless overwrite
            old = temp.parent / f"{_TEMP_PREFIX}old-{uuid.uuid4().hex}"
            try:
                os.rename(final, old)
            except FileNotFoundError:
                continue  # another writer moved it first: try again
            except OSError as error:
                raise DatasetError(
                    f"Minari dataset '{dataset_id}' at '{final}' could not be replaced ({error}); "
                    "expected a directory offrl may rename."
                ) from error
            set_aside.append(old)
        raise DatasetError(
            f"Minari dataset '{dataset_id}' could not be moved into place at '{final}': other writers "
            f"replaced it {_INSTALL_ATTEMPTS} times meanwhile; expected one writer per dataset id."
        )
    finally:
        if set_aside and not installed and not (final.exists() or final.is_symlink()):
            try:  # ours is not in place and nobody else's is: put the newest old dataset back
                os.rename(set_aside.pop(), final)
            except OSError:
                pass
        for old in set_aside:
            shutil.rmtree(old, ignore_errors=True)


def _ensure_namespaces(root: Path, dataset_id: str) -> None:
    """Mark the dataset's namespace directories as Minari does (`create_namespace`)."""
    namespace = parse_dataset_id(dataset_id)[0]
    if namespace is None:
        return
    parts = namespace.split("/")
    for depth in range(1, len(parts) + 1):
        directory = root.joinpath(*parts[:depth])
        directory.mkdir(parents=True, exist_ok=True)
        marker = directory / NAMESPACE_METADATA_FILENAME
        if not marker.exists():
            marker.write_text("{}")


def _registered_spec(env_id: str | None) -> gym.envs.registration.EnvSpec | None:
    if not env_id:
        return None
    try:
        return check_env_id(env_id)  # the registered spec with the id's overrides applied
    except ConfigError:
        return None


def _episode_buffers(dataset: Dataset) -> tuple[list[EpisodeBuffer], int]:
    """One Minari episode per offrl episode, split where the observations are not continuous."""
    obs = np.ascontiguousarray(dataset.observations)
    next_obs = np.ascontiguousarray(dataset.next_observations)
    n = dataset.num_transitions
    # Compare bit patterns so that even -0.0 versus 0.0 counts as a discontinuity.
    differs = np.any(next_obs[:-1].view(np.uint32) != obs[1:].view(np.uint32), axis=1)
    episode_start = np.zeros(n, dtype=bool)
    episode_start[dataset.episode_starts] = True
    cut = episode_start.copy()
    cut[1:] |= differs
    splits = int(np.count_nonzero(cut & ~episode_start))
    starts = np.flatnonzero(cut)
    ends = np.append(starts[1:], n)
    buffers = [
        EpisodeBuffer(
            observations=np.concatenate([obs[s:e], next_obs[e - 1 : e]]),
            actions=dataset.actions[s:e],
            rewards=dataset.rewards[s:e],
            terminations=dataset.terminals[s:e],
            truncations=dataset.timeouts[s:e],
            infos=None if dataset.costs is None else {COST_INFO_KEY: np.concatenate([[0.0], dataset.costs[s:e]]).astype(np.float32)},
        )
        for s, e in zip(starts, ends)
    ]
    return buffers, splits


def _minari_metadata(
    dataset: Dataset, dataset_id: str, low: np.ndarray | None, high: np.ndarray | None, splits: int
) -> dict[str, Any]:
    meta = dataset.metadata
    provenance = {k: v for k, v in meta.provenance.items() if k != "minari"}
    earlier = meta.provenance.get("minari") if isinstance(meta.provenance.get("minari"), dict) else {}
    description = provenance.get("description", earlier.get("description"))
    if not isinstance(description, str):
        description = (
            f"Exported by offrl from {meta.source or meta.name or 'an in-memory dataset'}: "
            f"{dataset.num_transitions} transitions in {dataset.num_episodes} episodes."
        )
    result: dict[str, Any] = {
        "dataset_id": dataset_id,
        "minari_version": minari.__version__,
        "description": description,
    }
    for key in _MINARI_WRITABLE_KEYS:
        value = provenance.get(key, earlier.get(key))
        if key in ("author", "author_email"):
            if isinstance(value, str):
                value = {value}
            elif isinstance(value, (list, tuple, set)) and all(isinstance(v, str) for v in value):
                value = set(value)
            else:
                continue
        elif key == "requirements":
            if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                continue
        elif not isinstance(value, str):
            continue
        result[key] = value
    if meta.ref_min_score is not None:
        result["ref_min_score"] = float(meta.ref_min_score)
    if meta.ref_max_score is not None:
        result["ref_max_score"] = float(meta.ref_max_score)
    result[OFFRL_METADATA_KEY] = to_jsonable(
        {
            "name": meta.name,
            "env_id": meta.env_id,
            "action_low": None if low is None else low.tolist(),
            "action_high": None if high is None else high.tolist(),
            "source": meta.source,
            "provenance": provenance,
            "split_discontinuous_episodes": splits,
        }
    )
    return result
