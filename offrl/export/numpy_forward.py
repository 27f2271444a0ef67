"""A policy's forward pass in plain NumPy, from the .npz that `offrl export --format npz` writes.

This file needs only NumPy and the standard library: `offrl export` copies it next to the .npz,
so a robot or a service can run the policy without JAX or offrl:

    from policy_forward import load_policy
    act = load_policy("policy.npz")
    actions = act(observations)          # (n, obs_dim) raw observations -> (n, action_dim) actions

The .npz holds the weights (`w0`, `w1`, ...) and `program_json`: the traced computation as a list of
operations (`offrl.export.program` explains how it is made), which `run_program` interprets.
"""

from __future__ import annotations

import json
import string

import numpy as np

FORMAT_VERSION = 1


def _einsum_spec(lhs_ndim, rhs_ndim, lhs_contract, rhs_contract, lhs_batch, rhs_batch):
    letters = iter(string.ascii_letters)
    lhs = [next(letters) for _ in range(lhs_ndim)]
    rhs = [None] * rhs_ndim
    for l_axis, r_axis in zip(lhs_batch, rhs_batch):
        rhs[r_axis] = lhs[l_axis]
    for l_axis, r_axis in zip(lhs_contract, rhs_contract):
        rhs[r_axis] = lhs[l_axis]
    rhs = [axis if axis is not None else next(letters) for axis in rhs]
    batch = [lhs[a] for a in lhs_batch]
    lhs_free = [lhs[a] for a in range(lhs_ndim) if a not in lhs_batch and a not in lhs_contract]
    rhs_free = [rhs[a] for a in range(rhs_ndim) if a not in rhs_batch and a not in rhs_contract]
    return f"{''.join(lhs)},{''.join(rhs)}->{''.join(batch + lhs_free + rhs_free)}"


def _shape(shape, batch):
    return tuple(batch if size == -1 else size for size in shape)


_UNARY = {
    "tanh": np.tanh, "exp": np.exp, "log": np.log, "neg": np.negative, "abs": np.abs, "sign": np.sign,
    "sqrt": np.sqrt, "rsqrt": lambda x: 1.0 / np.sqrt(x), "logistic": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "square": np.square, "log1p": np.log1p, "floor": np.floor, "ceil": np.ceil, "not": np.logical_not,
    "stop_gradient": lambda x: x, "copy": lambda x: x, "copy_p": lambda x: x,
    "sin": np.sin, "cos": np.cos, "exp2": np.exp2,
}
_BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "max": np.maximum, "min": np.minimum,
    "pow": np.power, "gt": np.greater, "lt": np.less, "ge": np.greater_equal, "le": np.less_equal, "eq": np.equal,
    "ne": np.not_equal, "and": np.logical_and, "or": np.logical_or, "atan2": np.arctan2, "rem": np.fmod,
}


def _erf(x):
    import math  # NumPy has no erf; math.erf per element is exact (GELU policies are small)

    return np.vectorize(math.erf, otypes=[x.dtype])(x)


def run_program(program: dict, weights: dict, observations: np.ndarray) -> np.ndarray:
    """Interpret `program` on a batch of observations (n, obs_dim) -> actions (n, action_dim)."""
    observations = np.asarray(observations, dtype=np.float32)
    single = observations.ndim == 1
    if single:
        observations = observations[None]
    batch = observations.shape[0]
    values = {name: weights[name] for name in program["constants"]}
    values[program["input"]] = observations
    for op in program["ops"]:
        kind, args, params = op["op"], [values[name] for name in op["inputs"]], op["params"]
        if kind in _UNARY:
            out = _UNARY[kind](args[0])
        elif kind in _BINARY:
            out = _BINARY[kind](args[0], args[1])
        elif kind == "erf":
            out = _erf(args[0])
        elif kind == "integer_pow":
            out = args[0] ** params["y"]
        elif kind == "dot_general":
            out = np.einsum(params["einsum"], args[0], args[1])
        elif kind == "broadcast_in_dim":
            target = params["shape"]
            operand = args[0]
            expanded = [1] * len(target)
            for source_axis, target_axis in enumerate(params["broadcast_dimensions"]):
                expanded[target_axis] = operand.shape[source_axis]
            reshaped = operand.reshape(expanded)
            # Batch dims (-1) stay as they are (1 or the batch); the others are materialised.
            out = np.broadcast_to(reshaped, [reshaped.shape[i] if size == -1 else size for i, size in enumerate(target)])
        elif kind == "reshape":
            out = args[0].reshape(_shape(params["shape"], batch) if -1 in params["shape"] else params["shape"])
        elif kind == "reduce_sum":
            out = np.sum(args[0], axis=tuple(params["axes"]))
        elif kind == "reduce_max":
            out = np.max(args[0], axis=tuple(params["axes"]))
        elif kind == "reduce_min":
            out = np.min(args[0], axis=tuple(params["axes"]))
        elif kind == "convert_element_type":
            out = args[0].astype(params["dtype"])
        elif kind == "select_n":
            predicate, cases = args[0], args[1:]
            out = np.where(predicate, cases[1], cases[0]) if len(cases) == 2 else np.choose(predicate.astype(np.int64), cases)
        elif kind == "clamp":
            out = np.clip(args[1], args[0], args[2])
        elif kind == "squeeze":
            out = np.squeeze(args[0], axis=tuple(params["dimensions"]))
        elif kind == "expand_dims":
            out = np.expand_dims(args[0], tuple(params["dimensions"]))
        elif kind == "concatenate":
            out = np.concatenate(args, axis=params["dimension"])
        elif kind == "transpose":
            out = np.transpose(args[0], params["permutation"])
        elif kind == "slice":
            index = tuple(slice(start, None if limit == -1 else limit, stride)
                          for start, limit, stride in zip(params["start"], params["limit"], params["strides"]))
            out = args[0][index]
        else:
            raise ValueError(f"operation {kind!r} is not known to this forward pass (format {FORMAT_VERSION})")
        values[op["outputs"][0]] = np.asarray(out).astype(op["dtype"], copy=False)
    actions = np.broadcast_to(values[program["output"]], (batch, program["action_dim"]))
    return actions[0] if single else np.array(actions)


def load_policy(path: str):
    """`act(observations) -> actions` from an .npz written by `offrl export --format npz`."""
    with np.load(path, allow_pickle=False) as archive:
        program = json.loads(str(archive["program_json"]))
        weights = {name: np.asarray(archive[name]) for name in program["constants"]}
    if program.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format version {program.get('format_version')}; this forward pass reads {FORMAT_VERSION}")
    return lambda observations: run_program(program, weights, observations)
