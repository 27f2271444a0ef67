"""Downloading public datasets into the offrl data directory (only when the user asks).

D4RL: the HDF5 file is fetched over HTTP(S) into a hidden temporary file of the data directory,
checked (size against Content-Length and an optional expected size / SHA-256, opens with h5py,
D4RL's keys present with equal lengths), then registered under its public name with D4RL's
reference scores and evaluation env (`registry.import_dataset`, which installs atomically), and
the temporary file is removed. Minari: `minari.download_dataset` fills a hidden staging root,
the result must open with Minari, and it is renamed into place. Any failure is one sentence
(`DatasetError`, exit 2 in the CLI) and leaves nothing registered, so rerunning starts cleanly.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import socket
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import h5py

from offrl.atomic import atomic_write_json
from offrl.data.d4rl_io import REQUIRED_KEYS
from offrl.data.public_names import D4RL_URL_ENV, PublicName, remote_name
from offrl.data.registry import _lookup, _registered, datasets_root, import_dataset
from offrl.errors import DatasetError

_CHUNK = 1 << 20
_TIMEOUT_SECONDS = 60


@dataclass
class Downloaded:
    name: str
    path: Path
    already_present: bool
    note: str = ""  # e.g. "no reference scores"


def registered_path(name: str, data_dir: str | None = None) -> Path | None:
    return _lookup(name, _registered(datasets_root(data_dir)))


def download(name: str, data_dir: str | None = None, expected_sha256: str | None = None,
             expected_size: int | None = None, ref_min: float | None = None, ref_max: float | None = None,
             echo=None) -> Downloaded:
    """Fetch the public dataset `name` and register it; a no-op if it is registered already."""
    public = remote_name(name)
    if (ref_min is None) != (ref_max is None):
        raise DatasetError("--ref-min and --ref-max go together; expected both reference returns or neither.")
    existing = registered_path(public.name, data_dir)
    if existing is not None:
        return Downloaded(public.name, existing, already_present=True, note=_reference_note(existing))
    if public.kind == "d4rl":
        path = _download_d4rl(public, data_dir, expected_sha256, expected_size, echo)
    else:
        path = _download_minari(public, data_dir)
    if ref_min is not None:
        _set_references(path, ref_min, ref_max)
    return Downloaded(public.name, path, already_present=False, note=_reference_note(path))


# ---------------------------------------------------------------------------------- D4RL
def _download_d4rl(public: PublicName, data_dir, expected_sha256, expected_size, echo) -> Path:
    root = datasets_root(data_dir, create=True)
    url = public.url()
    partial = root / f".download-{uuid.uuid4().hex}-{public.file_name}"
    try:
        if echo:
            echo(f"downloading {url}")
        _fetch(url, partial, public)
        _verify_file(partial, public, url, expected_sha256, expected_size)
        return import_dataset(str(partial), public.name, data_dir=data_dir)
    finally:
        partial.unlink(missing_ok=True)


def _fetch(url: str, target: Path, public: PublicName) -> None:
    """Stream `url` into `target`; a server error, refused connection or short body is one sentence."""
    mirror = f" (base URL from ${D4RL_URL_ENV})" if os.environ.get(D4RL_URL_ENV) else ""
    where = f"Downloading {public.name} from {url}{mirror} failed"
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_SECONDS) as response:
            length = response.headers.get("Content-Length")
            received = 0
            with open(target, "wb") as file:
                while chunk := response.read(_CHUNK):
                    file.write(chunk)
                    received += len(chunk)
    except urllib.error.HTTPError as error:
        raise DatasetError(f"{where}: the server answered HTTP {error.code} ({error.reason}); expected the "
                           f"file {public.file_name} (nothing was registered; check the URL or ${D4RL_URL_ENV}).") from None
    except (urllib.error.URLError, socket.timeout, ConnectionError, http.client.HTTPException, OSError) as error:
        reason = getattr(error, "reason", None) or error
        if isinstance(error, http.client.IncompleteRead):
            reason = f"the connection closed after {len(error.partial)} more bytes"
        raise DatasetError(f"{where} ({reason}); expected a reachable server (nothing was registered; rerun "
                           "the command to try again).") from None
    if length is not None and received != int(length):
        raise DatasetError(f"{where}: the download stopped at {received} of {int(length)} bytes; expected the "
                           "whole file (nothing was registered; rerun the command to try again).")


def _verify_file(path: Path, public: PublicName, url: str, expected_sha256: str | None, expected_size: int | None) -> None:
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        raise DatasetError(f"The file downloaded from {url} has {size} bytes; expected {expected_size} "
                           "(nothing was registered).")
    if expected_sha256 is not None:
        digest = hashlib.sha256()
        with open(path, "rb") as file:
            while block := file.read(_CHUNK):
                digest.update(block)
        if digest.hexdigest() != expected_sha256.lower():
            raise DatasetError(f"The file downloaded from {url} has SHA-256 {digest.hexdigest()[:16]}...; expected "
                               f"{expected_sha256[:16]}... (nothing was registered).")
    try:
        with h5py.File(path, "r") as file:
            missing = [key for key in REQUIRED_KEYS if key not in file]
            lengths = {key: file[key].shape[0] for key in REQUIRED_KEYS if key in file}
    except OSError:
        raise DatasetError(f"The file downloaded from {url} is not an HDF5 file; expected D4RL's "
                           f"{public.file_name} (nothing was registered).") from None
    if missing:
        raise DatasetError(f"The file downloaded from {url} lacks {', '.join(missing)}; expected D4RL's keys "
                           f"{', '.join(REQUIRED_KEYS)} (nothing was registered).")
    if len(set(lengths.values())) != 1:
        shown = ", ".join(f"{key} {count}" for key, count in lengths.items())
        raise DatasetError(f"The file downloaded from {url} has arrays of different lengths ({shown}); expected "
                           "one length (nothing was registered).")


# -------------------------------------------------------------------------------- Minari
def _download_minari(public: PublicName, data_dir) -> Path:
    """Minari's own download into a hidden staging root, checked, then renamed into the registry."""
    import minari

    from offrl.data.minari_io import read_minari

    root = datasets_root(data_dir, create=True)
    staging = root / f".download-{uuid.uuid4().hex}"
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(staging)
    try:
        try:
            minari.download_dataset(public.name)
        except Exception as error:  # noqa: BLE001 - Minari raises many kinds; the user gets one sentence
            text = " ".join(str(error).split())[:200] or type(error).__name__
            raise DatasetError(f"Minari could not download {public.name!r} ({text}); expected a dataset id Minari's "
                               "remote lists and a working network (nothing was registered).") from None
        downloaded = staging / public.name
        if not (downloaded / "data" / "metadata.json").is_file():
            raise DatasetError(f"Minari's download of {public.name!r} left no dataset at '{downloaded}'; expected "
                               "a Minari dataset directory (nothing was registered).")
        try:
            read_minari(downloaded)  # refuse to register what offrl cannot read
        except DatasetError as error:  # e.g. nested Dict observations (D4RL/kitchen)
            raise DatasetError(f"{str(error).rstrip('.')} (downloaded {public.name!r}; nothing was registered).") from None
        final = root / public.name
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(downloaded, final)
        except OSError as error:
            raise DatasetError(f"Dataset {public.name!r} could not be moved into '{final}' ({error.strerror}); "
                               "expected no other dataset there.") from None
        return final
    finally:
        if previous is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous
        shutil.rmtree(staging, ignore_errors=True)


# ----------------------------------------------------------------------------- references
def _metadata_path(path: Path) -> Path:
    return path / "data" / "metadata.json"


def _set_references(path: Path, ref_min: float, ref_max: float) -> None:
    """User-supplied reference returns, written where Minari (and offrl) read them."""
    if not ref_min < ref_max:
        raise DatasetError(f"--ref-min {ref_min} is not below --ref-max {ref_max}; expected min < max.")
    meta_path = _metadata_path(path)
    meta = json.loads(meta_path.read_text())
    meta["ref_min_score"], meta["ref_max_score"] = float(ref_min), float(ref_max)
    meta["offrl_reference_source"] = "user-supplied (--ref-min/--ref-max)"
    atomic_write_json(meta_path, meta)


def set_references(name: str, ref_min: float, ref_max: float, data_dir: str | None = None) -> Path:
    path = registered_path(name, data_dir)
    if path is None:
        raise DatasetError(f"Dataset {name!r} is not registered in '{datasets_root(data_dir)}'; expected it "
                           "downloaded or imported first.")
    _set_references(path, ref_min, ref_max)
    return path


def _reference_note(path: Path) -> str:
    try:
        meta = json.loads(_metadata_path(path).read_text())
    except (OSError, ValueError):
        return ""
    if meta.get("ref_min_score") is None or meta.get("ref_max_score") is None:
        return ("it records no reference scores, so offrl reports returns, not normalised scores (supply them with "
                "--ref-min/--ref-max)")
    return ""


def download_if_public(name: str, data_dir: str | None = None, echo=None) -> Downloaded | None:
    """`offrl train --download`: fetch `name` if it is a public name not registered yet; paths and
    registered names pass through untouched."""
    if Path(name).expanduser().exists() or registered_path(name, data_dir) is not None:
        return None
    result = download(name, data_dir=data_dir, echo=echo)
    if echo and result.note:
        echo(f"note: {result.name} {result.note}")
    return result
