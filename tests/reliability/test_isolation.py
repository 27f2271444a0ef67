"""The suite's own hygiene (tests/conftest.py): each test in a private working directory with
private data directories, JAX's compilation cache and matplotlib's cache in the session's temporary
directory, derandomised hypothesis, one XLA thread per xdist worker."""

from __future__ import annotations

import os
from pathlib import Path

import jax
from hypothesis import settings

CHECKOUT = Path(__file__).resolve().parents[2]


def test_each_test_runs_in_a_private_directory_with_private_data_directories(tmp_path, tmp_path_factory):
    assert Path.cwd() == tmp_path
    base = tmp_path_factory.getbasetemp()
    for variable in ("OFFRL_DATA_DIR", "MINARI_DATASETS_PATH"):
        path = Path(os.environ[variable])
        assert path.is_relative_to(base) and not path.is_relative_to(tmp_path), (variable, path)
    session = Path(os.environ["OFFRL_TEST_SESSION_DIR"])
    for variable in ("JAX_COMPILATION_CACHE_DIR", "MPLCONFIGDIR"):
        assert Path(os.environ[variable]).is_relative_to(session), variable
    assert jax.config.jax_compilation_cache_dir == os.environ["JAX_COMPILATION_CACHE_DIR"]
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0
    assert Path(os.environ["RAY_TMPDIR"]).is_dir() and len(os.environ["RAY_TMPDIR"]) < 40  # Ray's socket paths
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"
    for variable in ("OFFRL_DATA_DIR", "MINARI_DATASETS_PATH", "RAY_TMPDIR", "MPLCONFIGDIR", "JAX_COMPILATION_CACHE_DIR"):
        path = Path(os.environ[variable])
        assert not path.is_relative_to(CHECKOUT), (variable, path)
        for default in ("~/.offrl", "~/.minari", "~/.cache", "~/.config/matplotlib"):
            assert not path.is_relative_to(Path(default).expanduser()), (variable, path)


def test_hypothesis_is_derandomised_without_a_database():
    assert settings.default.derandomize and settings.default.database is None


def test_one_xla_thread_per_xdist_worker():
    if os.environ.get("PYTEST_XDIST_WORKER"):
        assert "--xla_cpu_multi_thread_eigen=false" in os.environ.get("XLA_FLAGS", "")
