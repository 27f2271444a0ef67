"""Session set-up for the whole suite, then shared fixtures.

At import, before anything imports JAX (this module is the first the test processes load):
- one temporary directory per pytest session (shared by the xdist workers and by the processes
  tests start: they inherit the environment) holds a persistent JAX compilation cache, so that a
  program compiled once (a tiny network's update, the same engine program in another test, a CLI
  subprocess, a Ray or spawned worker) is loaded instead of compiled again, and matplotlib's
  configuration cache; it is removed when the session ends;
- under xdist, XLA and Eigen use one thread per worker: the workers already share the cores;
- hypothesis runs derandomised, with no example database, everywhere (CI and local alike), and
  without a deadline (a first call that compiles takes seconds on a busy machine).

Every test then runs in its own temporary working directory, with the data, Minari and Ray
directories pointed into temporary directories too (`isolated`): nothing is read from or written
to the home directory or the checkout.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

_SESSION_DIR_ENV = "OFFRL_TEST_SESSION_DIR"


def _session_directory() -> str:
    """The session's temporary directory: made by the session's first process (plain pytest or
    the xdist controller, which starts its workers after loading this file), inherited by the rest."""
    directory = os.environ.get(_SESSION_DIR_ENV)
    if directory and os.path.isdir(directory):
        return directory
    directory = tempfile.mkdtemp(prefix="offrl-tests-")
    os.environ[_SESSION_DIR_ENV] = directory
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return directory


def _configure_environment() -> None:
    session = _session_directory()
    # JAX reads these from the environment when it is imported; child processes inherit them.
    os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(session, "jax-cache")
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"  # cache small programs too
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "-1"  # whatever their size
    try:
        import filelock  # noqa: F401 - a size limit makes JAX lock entries, so processes can share the cache safely
    except ImportError:
        os.environ["JAX_COMPILATION_CACHE_DIR"] = os.path.join(session, f"jax-cache-{os.getpid()}")
    else:
        os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"] = str(8 * 2**30)
    os.environ["MPLCONFIGDIR"] = os.path.join(session, "matplotlib")
    # Outside any test (collection, session fixtures) the data directories are the session's;
    # `isolated` gives each test its own.
    os.environ.update(_SESSION_DIRS)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    if os.environ.get("PYTEST_XDIST_WORKER"):
        flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()


_SESSION_DIRS = {"OFFRL_DATA_DIR": os.path.join(_session_directory(), "offrl_data"),
                 "MINARI_DATASETS_PATH": os.path.join(_session_directory(), "minari_datasets")}
_configure_environment()

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

from dataset_helpers import assert_aligned, assert_same_arrays, make_random_dataset  # noqa: E402
from offrl.algos import ALGORITHMS  # noqa: E402
from offrl.data.dataset import Dataset  # noqa: E402

settings.register_profile("offrl", derandomize=True, database=None, deadline=None)
settings.load_profile("offrl")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Each test runs in its own temporary working directory (a default `runs/` lands there),
    with offrl's data directory, Minari's datasets and Ray's session files in temporary
    directories of their own (outside `tmp_path`, which tests may list). A directory that a
    module- or session-scoped fixture has already pointed elsewhere (a suite generated once for
    a module) is left as that fixture set it."""
    monkeypatch.chdir(tmp_path)
    private = tmp_path_factory.mktemp("env")
    for variable, name in (("OFFRL_DATA_DIR", "offrl_data"), ("MINARI_DATASETS_PATH", "minari_datasets")):
        if os.environ.get(variable) == _SESSION_DIRS[variable]:
            monkeypatch.setenv(variable, str(private / name))
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    # Ray's socket paths must stay under 107 bytes: a short directory, not one under tmp_path.
    ray_dir = tempfile.mkdtemp(prefix="ray-")
    monkeypatch.setenv("RAY_TMPDIR", ray_dir)
    yield tmp_path
    shutil.rmtree(ray_dir, ignore_errors=True)


@pytest.fixture(scope="session", params=sorted(ALGORITHMS))
def small_algorithm(request):
    """Each offline algorithm with tiny networks, its data and its fused update compiled once per
    test process (reliability_helpers.SmallAlgorithm); tests that take it run once per algorithm."""
    from reliability_helpers import small_algorithm

    return small_algorithm(request.param)


@pytest.fixture
def make_dataset():
    return make_random_dataset


@pytest.fixture
def same_arrays():
    return assert_same_arrays


@pytest.fixture
def aligned():
    return assert_aligned


@pytest.fixture
def minari_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private MINARI_DATASETS_PATH, so no test writes under ~/.minari."""
    root = tmp_path / "minari_datasets"
    root.mkdir()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


@pytest.fixture(scope="session")
def pendulum_references() -> tuple[float, float]:
    """Reference returns measured here: a uniform random policy and the scripted controller."""
    from offrl.evaluate.rollout import evaluate_policy
    from scripted import swing_up

    rng = np.random.default_rng(123)
    random_return = evaluate_policy(lambda obs: rng.uniform(-2, 2, (len(obs), 1)), "Pendulum-v1", 10, seed=1).mean_return
    expert_return = evaluate_policy(swing_up, "Pendulum-v1", 10, seed=1).mean_return
    return random_return, expert_return


@pytest.fixture(scope="session")
def pendulum_dataset(pendulum_references) -> Dataset:
    """40 Pendulum-v1 episodes (8,000 transitions): the scripted controller with Gaussian noise,
    replaced by a uniform random action on half of the steps. Mean return about -550."""
    from offrl.data.collect import collect_episodes
    from scripted import mixed_quality

    dataset = collect_episodes("Pendulum-v1", mixed_quality(0.5), num_episodes=40, seed=0, name="pendulum-mixed-v0")
    dataset.metadata.ref_min_score, dataset.metadata.ref_max_score = pendulum_references
    # Pendulum-v1 has no constraint: cost 0 on every step, so that the safe algorithms (which
    # refuse data without costs) run in the generic tests too.
    return dataset.replace(costs=np.zeros(dataset.num_transitions, np.float32))


@pytest.fixture(scope="session")
def pendulum_mostly_random_dataset(pendulum_references) -> Dataset:
    """Like `pendulum_dataset` but with 80% uniform random actions (mean return about -930):
    imitation alone stays near -840 here, so learning needs the Q-function."""
    from offrl.data.collect import collect_episodes
    from scripted import mixed_quality

    dataset = collect_episodes("Pendulum-v1", mixed_quality(0.8), num_episodes=40, seed=0, name="pendulum-mostly-random-v0")
    dataset.metadata.ref_min_score, dataset.metadata.ref_max_score = pendulum_references
    return dataset
