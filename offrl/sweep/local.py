"""The local executor: a pool of trial processes sized to the machine.

Each trial is a fresh `python -m offrl.sweep.trial SWEEP_DIR TRIAL_ID` process (JAX does not
survive fork, and a trial that crashes or is killed takes nothing else down); a thread per
worker waits on it. The trial's output goes to trials/<id>/trial.log.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable

from offrl.errors import ConfigError
from offrl.sweep.index import JAX_CACHE_NAME, TRIAL_LOG, now, trial_dir
from offrl.sweep.trial import compilation_cache_env


def machine_workers() -> int:
    """How many trials to run at once: the CPU cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class LocalExecutor:
    name = "local"
    wants_datasets = False

    def __init__(self, workers: int | None = None):
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers is {workers}; expected a positive number of trials to run at once.")
        self.workers = workers

    def describe(self, trials: int) -> dict[str, Any]:
        return {"engine": self.name, "workers": self._pool_size(trials)}

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def _pool_size(self, trials: int) -> int:
        return max(1, min(self.workers or machine_workers(), trials))

    def run(self, sweep_dir: Path, trials: list[dict[str, Any]], datasets: dict, spec_hash: str,
            on_start: Callable[[str], None], on_done: Callable[[str, dict[str, Any]], None]) -> None:
        if not trials:
            return
        processes: dict[str, subprocess.Popen] = {}
        guard = threading.Lock()
        stopping = threading.Event()

        def run_one(trial_id: str) -> dict[str, Any]:
            if stopping.is_set():
                return {"cancelled": True}
            directory = trial_dir(sweep_dir, trial_id)
            directory.mkdir(parents=True, exist_ok=True)
            on_start(trial_id)
            env = dict(os.environ)
            # Several trials may share one GPU: do not let each process claim most of its memory.
            env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
            env.update(compilation_cache_env(Path(sweep_dir) / JAX_CACHE_NAME))
            with open(directory / TRIAL_LOG, "a") as log:
                log.write(f"--- {now()} trial {trial_id} (local executor, pid of the sweep {os.getpid()})\n")
                log.flush()
                process = subprocess.Popen([sys.executable, "-m", "offrl.sweep.trial", str(sweep_dir), trial_id],
                                           stdout=log, stderr=subprocess.STDOUT, env=env)
                with guard:
                    processes[trial_id] = process
                returncode = process.wait()
                with guard:
                    processes.pop(trial_id, None)
            return {"returncode": returncode}

        pool = ThreadPoolExecutor(max_workers=self._pool_size(len(trials)), thread_name_prefix="offrl-trial")
        try:
            futures = {pool.submit(run_one, trial["id"]): trial["id"] for trial in trials}
            for future in as_completed(futures):
                outcome = future.result()
                if not outcome.get("cancelled"):
                    on_done(futures[future], outcome)
        except KeyboardInterrupt:
            # Ctrl-C: pass it on to the running trials (they mark their runs interrupted) and
            # start no new ones; they resume on the next run of the sweep.
            stopping.set()
            with guard:
                for process in processes.values():
                    if process.poll() is None:
                        process.send_signal(signal.SIGINT)
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def describe_returncode(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"the trial process was ended by {name}"
    return f"the trial process exited with code {returncode}"

