"""Checks shared by the export tests: the exported files in a fresh interpreter without JAX."""

from __future__ import annotations

import subprocess
import sys


def assert_runs_without_jax(directory) -> None:
    """Load policy.onnx and policy.npz (via policy_forward.py) in a fresh interpreter and compare."""
    script = (
        "import sys, numpy as np, onnxruntime\n"
        f"sys.path.insert(0, {str(directory)!r})\n"
        "from policy_forward import load_policy\n"
        f"d = {str(directory)!r}\n"
        "obs, expected = np.load(d + '/observations.npy'), np.load(d + '/expected.npy')\n"
        "session = onnxruntime.InferenceSession(d + '/policy.onnx', providers=['CPUExecutionProvider'])\n"
        "onnx_error = np.abs(session.run(['actions'], {'observations': obs})[0] - expected).max()\n"
        "npz_error = np.abs(load_policy(d + '/policy.npz')(obs) - expected).max()\n"
        "assert 'jax' not in sys.modules and 'offrl' not in sys.modules, sorted(m for m in sys.modules if 'jax' in m)\n"
        "print(onnx_error, npz_error)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=directory, timeout=120)
    assert done.returncode == 0, done.stderr
    onnx_error, npz_error = map(float, done.stdout.split())
    assert onnx_error <= 1e-5 and npz_error <= 1e-5
