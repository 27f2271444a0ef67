"""The Ray executor: one Ray task per trial, on a local Ray instance or a cluster.

Ray is an optional extra (`pip install 'offrl[ray]'`) and is imported only here, only when
`--engine ray` is used.

Two ways to get data in and results back (docs/ray.md):
- "ship" (default): nothing shared between machines. The sweep process loads each dataset once
  and puts it in Ray's object store; a task receives the dataset, the trial's definition and, for
  a trial that was interrupted earlier, a tar of its directory (so it resumes from its
  checkpoints); it trains in a temporary directory on the worker and returns the trial
  directory as a tar, which the sweep process unpacks into SWEEP_DIR/trials/<id>/.
- "shared": the sweep directory (and every dataset path / data directory) is visible at the same
  path on every node (NFS and the like); a task runs the trial in place, like the local executor.

Either way the sweep directory ends up the same as with the local executor.
"""

from __future__ import annotations

import io
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Callable

from offrl.errors import ConfigError
from offrl.sweep.index import trial_dir

STORAGE_MODES = ("ship", "shared")
# Each node's own compilation cache (offrl.sweep.trial.use_compilation_cache): never shared
# storage, whose nodes may have other CPUs.
NODE_JAX_CACHE = Path(tempfile.gettempdir()) / "offrl-jax-cache"


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--engine ray needs Ray, which is not installed; expected `pip install 'offrl[ray]'` "
                          "(or use the default local engine).") from None
    return ray


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0,
                 storage: str = "ship"):
        if storage not in STORAGE_MODES:
            raise ConfigError(f"--ray-storage is {storage!r}; expected one of: {', '.join(STORAGE_MODES)}.")
        if not cpus_per_trial > 0:
            raise ConfigError(f"--cpus-per-trial is {cpus_per_trial}; expected a positive number.")
        if not gpus_per_trial >= 0:
            raise ConfigError(f"--gpus-per-trial is {gpus_per_trial}; expected 0 or a positive number.")
        self.ray = import_ray()
        self.address = address
        self.cpus_per_trial = cpus_per_trial
        self.gpus_per_trial = gpus_per_trial
        self.storage = storage

    @property
    def wants_datasets(self) -> bool:
        return self.storage == "ship"

    def describe(self, trials: int) -> dict[str, Any]:
        return {"engine": self.name, "address": self.address, "storage": self.storage,
                "cpus_per_trial": self.cpus_per_trial, "gpus_per_trial": self.gpus_per_trial}

    def run(self, sweep_dir: Path, trials: list[dict[str, Any]], datasets: dict, spec_hash: str,
            on_start: Callable[[str], None], on_done: Callable[[str, dict[str, Any]], None]) -> None:
        if not trials:
            return
        ray = self.ray
        self.start()
        pending: dict[Any, str] = {}
        try:
            options: dict[str, Any] = {"num_cpus": self.cpus_per_trial, "num_gpus": self.gpus_per_trial, "max_retries": 0}
            if 0 < self.gpus_per_trial < 1:  # trials share a GPU: none may preallocate most of its memory
                options["runtime_env"] = {"env_vars": {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}}
            if self.storage == "ship":
                task = ray.remote(**options)(ship_trial)
                refs = {argument: ray.put(dataset) for argument, (dataset, _) in datasets.items()}
                for trial in trials:
                    on_start(trial["id"])
                    dataset_ref, fingerprint = refs[trial["dataset"]], datasets[trial["dataset"]][1]
                    previous = pack(trial_dir(sweep_dir, trial["id"]))
                    pending[task.remote(trial, spec_hash, dataset_ref, fingerprint, previous)] = trial["id"]
            else:
                task = ray.remote(**options)(in_place_trial)
                for trial in trials:
                    on_start(trial["id"])
                    pending[task.remote(str(sweep_dir), trial["id"])] = trial["id"]
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                trial_id = pending.pop(ready[0])
                try:
                    result = ray.get(ready[0])
                except Exception as error:  # noqa: BLE001 - a dead worker or task: this trial only
                    on_done(trial_id, {"error": f"the Ray task ended without a result ({type(error).__name__}: "
                                                f"{str(error).splitlines()[0] if str(error) else ''})"})
                    continue
                if self.storage == "ship":
                    payload, _ = result
                    unpack(payload, trial_dir(sweep_dir, trial_id))
                on_done(trial_id, {})
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise

    def start(self) -> None:
        """Connect to Ray (before the sweep loads anything: Ray starts processes of its own)."""
        if not self.ray.is_initialized():
            # A cluster when an address is given (or RAY_ADDRESS is set), else a local instance.
            self.ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
            self._started_here = True

    def stop(self) -> None:
        """Shut down the Ray connection if `start` made it (a caller's own ray.init is left alone)."""
        if getattr(self, "_started_here", False):
            self.ray.shutdown()
            self._started_here = False


# ------------------------------------------------------------------- what runs on a worker
def ship_trial(trial: dict[str, Any], spec_hash: str, dataset, fingerprint: str, previous: bytes | None):
    """Run `trial` in a temporary directory (seeded with `previous`); return (tar of it, record)."""
    from offrl.sweep.trial import run_trial, use_compilation_cache

    use_compilation_cache(NODE_JAX_CACHE)
    with tempfile.TemporaryDirectory(prefix="offrl-trial-") as temp:
        directory = Path(temp) / trial["id"]
        directory.mkdir()
        if previous:
            _extract(previous, directory)
        record = run_trial(trial, directory, spec_hash, dataset=dataset, expected_fingerprint=fingerprint)
        return pack(directory), record


def in_place_trial(sweep_dir: str, trial_id: str) -> dict[str, Any]:
    from offrl.sweep.trial import run_from_sweep_directory, use_compilation_cache

    use_compilation_cache(NODE_JAX_CACHE)
    return run_from_sweep_directory(sweep_dir, trial_id)


# ------------------------------------------------------------------------- tar in and out
def pack(directory: Path) -> bytes | None:
    """The directory's contents as an uncompressed tar (checkpoints barely compress), or None."""
    replaced = directory.with_name(f".{directory.name}.replaced")
    if replaced.is_dir() and not directory.exists():  # an earlier unpack stopped half-way: undo it
        replaced.rename(directory)
    if not directory.is_dir() or not any(directory.iterdir()):
        return None
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path in sorted(directory.iterdir()):
            archive.add(path, arcname=path.name)
    return buffer.getvalue()


def _extract(payload: bytes, directory: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r") as archive:
        archive.extractall(directory, filter="data")  # refuses absolute paths and links out of it


def unpack(payload: bytes, directory: Path) -> None:
    """Replace `directory` by the returned one. What the task received is inside what it returns
    (it continued from it), so the replaced copy is removed only once the new one is in place."""
    incoming = directory.with_name(f".{directory.name}.incoming")
    replaced = directory.with_name(f".{directory.name}.replaced")
    for leftover in (incoming, replaced):
        if leftover.exists():
            shutil.rmtree(leftover)
    incoming.mkdir(parents=True)
    _extract(payload, incoming)
    if directory.exists():
        directory.rename(replaced)
    incoming.rename(directory)
    if replaced.exists():
        shutil.rmtree(replaced)
