"""Named datasets: a local registry of Minari datasets under one data directory.

Layout: `<data_dir>/datasets/<name>` is a Minari dataset directory, `<name>` a Minari id such as
`halfcheetah-medium-replay-v0` (so `MINARI_DATASETS_PATH=<data_dir>/datasets` lets Minari's own
`minari.load_dataset(name)` open it too). `data_dir` is, in order: the function argument, the
`OFFRL_DATA_DIR` environment variable, `~/.offrl`. A name without its `-vN` suffix resolves to the
highest registered version. The name `default` is the small dataset shipped inside the package
(`offrl/data/builtin/`), made by `offrl.suites.make_suite`.

D4RL's published reference returns are applied only when a file is imported under a D4RL
locomotion name and carries no reference scores itself; generated datasets carry their own.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from offrl.data.dataset import Dataset
from offrl.data.load import load_dataset
from offrl.data.minari_io import evaluation_env_id
from offrl.data.public_names import looks_public, parse_public_name, suggestion_text
from offrl.errors import DatasetError

DATA_DIR_ENV = "OFFRL_DATA_DIR"
BUILTIN_DIR = Path(__file__).parent / "builtin"
DEFAULT_NAME = "default"
_VERSION = re.compile(r"^(?P<base>.+)-v(?P<version>\d+)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*(/[A-Za-z0-9][A-Za-z0-9_\-]*)*$")

# D4RL's reference returns for its MuJoCo locomotion datasets: REF_MIN_SCORE / REF_MAX_SCORE in
# d4rl/infos.py (Fu et al. 2020), the same for every dataset of an environment.
D4RL_REFERENCE_SCORES: dict[str, tuple[float, float]] = {
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
}
# The Gymnasium environments D4RL locomotion policies are evaluated in. Rule: the Gymnasium
# version with the model and reward D4RL recorded on (gym's mujoco-py v3 envs), so that scores
# compare with published ones. That is v4 (the same XML and reward, on the `mujoco` bindings):
# - walker2d: Walker2d-v5 raised the right foot's friction from 0.9 to 1.9 (gymnasium
#   walker2d_v5.py changelog), a different robot; v4 keeps 0.9.
# - hopper: Hopper-v5 stops paying the healthy reward on the step that ends an episode; v4 pays it
#   as v3 did (same model).
# - halfcheetah: v4 and v5 share model and reward; v4 for the one rule.
# - ant: no Gymnasium version matches. D4RL's ant has 111-dim observations whose contact forces
#   are zero (mujoco-py 2.0) and no contact cost; Ant-v4 gives 27 dims (111 with
#   use_contact_forces=True, but non-zero forces and a contact cost), Ant-v5 105 dims and a contact
#   cost. Ant-v5 stays as the default; its scores are not comparable with published ones.
D4RL_ENV_IDS = {"hopper": "Hopper-v4", "halfcheetah": "HalfCheetah-v4", "walker2d": "Walker2d-v4", "ant": "Ant-v5"}
_D4RL_NAME = re.compile(
    r"^(?:d4rl/)?(?P<env>hopper|halfcheetah|walker2d|ant)[-_]"
    r"(?:random|medium|expert|medium[-_]replay|medium[-_]expert|full[-_]replay)(?:-v\d+)?$"
)


# ----------------------------------------------------------------------------- locations
def default_data_dir(override: str | None = None) -> Path:
    """The data directory: `override`, else `$OFFRL_DATA_DIR`, else `~/.offrl`."""
    chosen = override or os.environ.get(DATA_DIR_ENV) or "~/.offrl"
    return Path(chosen).expanduser()


def datasets_root(data_dir: str | None = None, create: bool = False) -> Path:
    """`<data_dir>/datasets`; with `create`, made and checked to be writable."""
    root = default_data_dir(data_dir) / "datasets"
    if create:
        probe = root / f".offrl-write-test-{uuid.uuid4().hex}"
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe.write_text("")
            probe.unlink()
        except OSError as error:
            raise DatasetError(
                f"Data directory '{root.parent}' is not writable ({error.strerror or error}); expected a "
                f"writable directory (set {DATA_DIR_ENV} or pass --data-dir)."
            ) from None
    return root


def builtin_path() -> Path:
    """The directory of the dataset shipped with the package (the name `default`)."""
    candidates = sorted(p.parent.parent for p in BUILTIN_DIR.glob("*/data/metadata.json"))
    if not candidates:
        raise DatasetError(
            f"The built-in dataset is missing from '{BUILTIN_DIR}'; expected a Minari dataset directory "
            "there (reinstall offrl)."
        )
    return candidates[0]


# ------------------------------------------------------------------------------ resolving
def _registered(root: Path) -> dict[str, Path]:
    if not root.is_dir():
        return {}
    found = {}
    for metadata in sorted(root.rglob("data/metadata.json")):
        directory = metadata.parent.parent
        name = directory.relative_to(root).as_posix()
        if not any(part.startswith(".") for part in Path(name).parts):  # temporary directories
            found[name] = directory
    return found


def _lookup(name: str, registered: dict[str, Path]) -> Path | None:
    if name in registered:
        return registered[name]
    versions = []
    for candidate, path in registered.items():
        match = _VERSION.match(candidate)
        if match and match.group("base") == name:
            versions.append((int(match.group("version")), path))
    return max(versions)[1] if versions else None


def resolve_dataset(name_or_path: str, data_dir: str | None = None, clip_actions: bool = False) -> Dataset:
    """An existing path, the name `default` (built in), or a registered name -> `Dataset`."""
    path = Path(str(name_or_path)).expanduser()
    if path.exists():
        return load_dataset(path, clip_actions=clip_actions)
    if str(name_or_path) == DEFAULT_NAME:
        dataset = load_dataset(builtin_path(), clip_actions=clip_actions)
        dataset.metadata.name = dataset.metadata.name or DEFAULT_NAME
        return dataset
    root = datasets_root(data_dir)
    registered = _registered(root)
    found = _lookup(str(name_or_path), registered)
    if found is None:
        raise _not_found(str(name_or_path), root, registered)
    return load_dataset(found, clip_actions=clip_actions)


def _not_found(name: str, root: Path, registered: dict[str, Path]) -> DatasetError:
    """A public name not downloaded yet: how to get it; anything else: the closest names."""
    public = parse_public_name(name)
    if public is not None:
        return DatasetError(f"Dataset {name!r} is not in '{root}' yet; expected it downloaded first with "
                            f"{public.how_to_get}.")
    if looks_public(name) and not name.startswith("d4rl/"):
        return DatasetError(f"Dataset {name!r} is not in '{root}'; expected it downloaded first with "
                            f"`offrl datasets download {name}` if Minari lists it, or {suggestion_text(name, list(registered))}.")
    return DatasetError(f"Unknown dataset {name!r}: it is neither an existing path nor a dataset registered in "
                        f"'{root}'; expected {suggestion_text(name, [DEFAULT_NAME, *registered])}.")


# -------------------------------------------------------------------------------- listing
def _summary(path: Path) -> dict[str, Any]:
    """Counts, mean return and reference scores, from Minari's metadata where it has them."""
    meta = json.loads((path / "data" / "metadata.json").read_text())
    offrl_meta = meta.get("offrl_metadata") or {}
    summary = (offrl_meta.get("provenance") or {}).get("summary") or {}
    if not {"transitions", "episodes", "mean_return"} <= set(summary):
        summary = dataset_summary(load_dataset(path))
    return {
        "env_id": offrl_meta.get("env_id") or evaluation_env_id(meta),
        "transitions": summary["transitions"],
        "episodes": summary["episodes"],
        "mean_return": summary["mean_return"],
        "ref_min_score": meta.get("ref_min_score"),
        "ref_max_score": meta.get("ref_max_score"),
        "path": str(path),
    }


def dataset_summary(dataset: Dataset) -> dict[str, Any]:
    return {
        "transitions": dataset.num_transitions,
        "episodes": dataset.num_episodes,
        "mean_return": float(np.mean(dataset.episode_returns())),
    }


def list_datasets(data_dir: str | None = None) -> list[dict]:
    """Every registered dataset (and the built-in `default`), one dict each."""
    rows = []
    try:
        rows.append({"name": DEFAULT_NAME, **_summary(builtin_path())})
    except DatasetError:
        pass
    for name, path in _registered(datasets_root(data_dir)).items():
        try:
            rows.append({"name": name, **_summary(path)})
        except (DatasetError, OSError, ValueError) as error:
            rows.append({"name": name, "path": str(path), "error": str(error)})
    return rows


# ------------------------------------------------------------------------------ importing
def registered_name(name: str) -> str:
    """Check a registry name and give it a version (`-v0`) if it has none."""
    if not _NAME.match(name) or name == DEFAULT_NAME:
        raise DatasetError(
            f"Dataset name {name!r} is not usable; expected letters, digits, '-' or '_' (optionally "
            "'namespace/name'), ending in a version such as '-v0', and not 'default'."
        )
    return name if _VERSION.match(name) else f"{name}-v0"


def import_dataset(path: str, name: str, data_dir: str | None = None, overwrite: bool = False,
                   dataset: Dataset | None = None) -> Path:
    """Import a D4RL HDF5 file, a .npz file or a Minari directory as the registered dataset `name`
    (or `dataset`, already read from `path`, e.g. tabular logs by offrl.data.tabular_io)."""
    from offrl.data.minari_io import write_minari

    dataset_id = registered_name(name)
    dataset = load_dataset(path) if dataset is None else dataset
    root = datasets_root(data_dir, create=True)
    target = root / dataset_id
    if target.exists() and not overwrite:
        raise DatasetError(
            f"Dataset {dataset_id!r} is already registered at '{target}'; expected a new name (or overwrite)."
        )
    meta = dataset.metadata
    provenance = dict(meta.provenance)
    d4rl = _D4RL_NAME.match(name.lower())
    if d4rl:
        env = d4rl.group("env")
        if meta.ref_min_score is None and meta.ref_max_score is None:
            meta.ref_min_score, meta.ref_max_score = D4RL_REFERENCE_SCORES[env]
            provenance["reference_scores"] = "D4RL published REF_MIN_SCORE/REF_MAX_SCORE (d4rl/infos.py)"
        if meta.env_id is None:
            meta.env_id = D4RL_ENV_IDS[env]
    provenance["imported_from"] = str(Path(path).expanduser().resolve())
    provenance["summary"] = dataset_summary(dataset)
    meta.provenance = provenance
    meta.name = dataset_id
    return write_minari(dataset, dataset_id, root=root, overwrite=overwrite)
