"""`offrl export RUN_DIR --format onnx|npz --out PATH`: a policy that runs without the trainer.

- onnx: one file mapping raw observations (batch, obs_dim) to actions in the env's bounds, the
  observation normaliser and the action rescaling included; run it with onnxruntime.
- npz: the weights and the traced program, plus `policy_forward.py` written beside it: a forward
  pass that needs only NumPy (offrl/export/numpy_forward.py).

Both are checked before anything is written: the exported forward pass must match
`offrl.load_policy` on 1,000 observations drawn around the dataset's observation statistics
(max abs error at most `--tolerance`, 1e-5 by default); a mismatch writes nothing.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np

from offrl.atomic import atomic_write_bytes
from offrl.errors import ConfigError
from offrl.export import numpy_forward
from offrl.export.program import policy_program
from offrl.train.policy import load_policy

FORMATS = ("onnx", "npz")
PARITY_OBSERVATIONS = 1_000


def add_command(commands) -> None:
    sub = commands.add_parser("export", help="write a run's policy as ONNX or NumPy-only .npz (normaliser and action bounds included)",
                              description=__doc__.splitlines()[0])
    sub.add_argument("run_dir", metavar="RUN_DIR")
    sub.add_argument("--format", choices=FORMATS, default="onnx", help="onnx (onnxruntime) or npz (+ policy_forward.py, NumPy only) (default: onnx)")
    sub.add_argument("--out", required=True, help="the file to write (.onnx or .npz)")
    sub.add_argument("--checkpoint", default=None, help="a checkpoint file (default: the run's latest valid one)")
    sub.add_argument("--tolerance", type=float, default=1e-5, help="max abs action error allowed against load_policy (default: 1e-5)")
    sub.set_defaults(handler=cmd_export)


def parity_observations(policy, count: int = PARITY_OBSERVATIONS, seed: int = 0) -> np.ndarray:
    """Observations around the training data: N(mean, (2 std)²) of the run's normaliser."""
    normalizer = policy.normalizer
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(count, len(normalizer.observation_mean))).astype(np.float32)
    return (normalizer.observation_mean + 2.0 * noise * normalizer.observation_std).astype(np.float32)


def export_policy(run_dir: str | Path, out: str | Path, fmt: str = "onnx", checkpoint: str | None = None,
                  tolerance: float = 1e-5) -> dict:
    """Write the export; return {"path", "max_abs_error", ...}. Refuses (ConfigError) a policy that
    cannot be exported or that does not match load_policy within `tolerance`."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt} is not known; expected one of {', '.join(FORMATS)}.")
    out = Path(out)
    if not out.parent.exists():
        raise ConfigError(f"--out {out}: directory '{out.parent}' does not exist; expected an existing directory.")
    policy = load_policy(run_dir, checkpoint)
    program, constants = policy_program(policy)
    observations = parity_observations(policy)
    expected = np.asarray(policy(observations))
    if fmt == "onnx":
        from offrl.export.onnx_writer import program_to_onnx

        payload = program_to_onnx(program, constants).SerializeToString()
        actual = _onnx_actions(payload, observations)
    else:
        buffer = io.BytesIO()
        np.savez(buffer, program_json=np.asarray(json.dumps(program)), **constants)
        payload = buffer.getvalue()
        actual = numpy_forward.run_program(program, constants, observations)
    error = float(np.max(np.abs(actual - expected)))
    if not error <= tolerance:
        raise ConfigError(f"The exported {fmt} policy differs from load_policy by {error:.3g} on {len(observations)} "
                          f"observations; expected at most --tolerance {tolerance:g} (nothing was written).")
    atomic_write_bytes(out, payload)
    written = [str(out)]
    if fmt == "npz":
        forward = out.parent / "policy_forward.py"
        atomic_write_bytes(forward, Path(numpy_forward.__file__).read_bytes())
        written.append(str(forward))
    return {"path": str(out), "files": written, "format": fmt, "max_abs_error": error,
            "parity_observations": len(observations), "algorithm": program["algorithm"],
            "observation_dim": program["observation_dim"], "action_dim": program["action_dim"]}


def _onnx_actions(payload: bytes, observations: np.ndarray) -> np.ndarray:
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError("Checking the ONNX export needs onnxruntime, which is not installed; expected `pip install offrl[export]`.") from None
    session = onnxruntime.InferenceSession(payload, providers=["CPUExecutionProvider"])
    return session.run(["actions"], {"observations": observations})[0]


def cmd_export(args: argparse.Namespace) -> int:
    result = export_policy(args.run_dir, args.out, args.format, args.checkpoint, args.tolerance)
    print(f"wrote {', '.join(result['files'])} ({result['algorithm']}, {result['observation_dim']} -> {result['action_dim']}); "
          f"max abs error against load_policy on {result['parity_observations']} observations: {result['max_abs_error']:.2g}")
    return 0

