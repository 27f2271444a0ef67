"""A trained policy's forward pass as a flat program: traced once from JAX, run without it.

`policy_program(policy)` traces the same function `offrl.load_policy` runs (observation
normaliser, the algorithm's deterministic `act`, action rescaling to the env's bounds) with
`jax.make_jaxpr`, inlines nested calls (jit, custom_jvp such as relu), drops what the output does
not need (e.g. a key split for sampling that deterministic acting ignores), and writes each
remaining primitive as one operation over named values, the parameters becoming constants. The
same program is what the NumPy forward pass interprets (offrl/export/numpy_forward.py) and what
the ONNX writer translates node by node (offrl/export/onnx_writer.py), so every MLP policy exports
without per-algorithm code.

The batch size is traced as a sentinel number (`TRACE_BATCH`, a prime no layer width is); a
dimension of that size is written as -1, "the batch", so the exported graph takes any batch size.
"""

from __future__ import annotations

import json
from typing import Any

import jax
import numpy as np
from jax.extend import core as jax_core

from offrl.errors import ConfigError
from offrl.export.numpy_forward import FORMAT_VERSION, _einsum_spec

TRACE_BATCH = 9973
_CALLS = {"pjit": "jaxpr", "jit": "jaxpr", "closed_call": "call_jaxpr", "core_call": "call_jaxpr",
          "custom_jvp_call": "call_jaxpr", "custom_vjp_call": "call_jaxpr", "custom_vjp_call_jaxpr": "fun_jaxpr",
          "remat": "jaxpr", "checkpoint": "jaxpr"}
_SIMPLE = {"tanh", "exp", "log", "neg", "abs", "sign", "sqrt", "rsqrt", "logistic", "square", "log1p", "floor", "ceil",
           "not", "stop_gradient", "copy", "copy_p", "sin", "cos", "exp2", "erf", "add", "sub", "mul", "div", "max",
           "min", "pow", "gt", "lt", "ge", "le", "eq", "ne", "and", "or", "atan2", "rem", "select_n", "clamp",
           "concatenate", "add_any"}


class NotExportable(ConfigError):
    """The policy cannot be written as a memoryless program (one sentence says why)."""


def _shape(shape) -> list[int]:
    return [-1 if size == TRACE_BATCH else int(size) for size in shape]


class _Builder:
    def __init__(self):
        self.ops: list[dict[str, Any]] = []
        self.constants: dict[str, np.ndarray] = {}
        self.names: dict[Any, str] = {}
        self.count = 0

    def fresh(self) -> str:
        self.count += 1
        return f"v{self.count}"

    def constant(self, value) -> str:
        name = f"w{len(self.constants)}"
        array = np.asarray(value)
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        self.constants[name] = array
        return name

    def read(self, atom, env) -> str:
        if isinstance(atom, jax_core.Literal):
            return self.constant(atom.val)
        return env[atom]

    def emit(self, jaxpr, env) -> None:
        for eqn in jaxpr.eqns:
            name = eqn.primitive.name
            inputs = [self.read(atom, env) for atom in eqn.invars]
            if name in _CALLS or "jaxpr" in eqn.params and name not in ("cond", "while", "scan"):
                inner = eqn.params.get(_CALLS.get(name, "jaxpr")) or eqn.params.get("call_jaxpr") or eqn.params.get("jaxpr")
                closed = inner if hasattr(inner, "jaxpr") else jax_core.ClosedJaxpr(inner, ())
                inner_env = {var: self.constant(value) for var, value in zip(closed.jaxpr.constvars, closed.consts)}
                inner_env.update(zip(closed.jaxpr.invars, inputs))
                self.emit(closed.jaxpr, inner_env)
                for outer, atom in zip(eqn.outvars, closed.jaxpr.outvars):
                    env[outer] = self.read(atom, inner_env)
                continue
            # An operation the exporter cannot write is an error only if the output needs it (checked
            # after pruning): deterministic acting may split a key it never uses.
            try:
                if len(eqn.outvars) != 1:
                    raise NotExportable(f"the policy uses '{name}', which returns several values; expected "
                                        "single-output operations (an MLP policy).")
                params, dtype = self.translate(name, eqn, eqn.outvars[0]), np.dtype(eqn.outvars[0].aval.dtype).name
            except (NotExportable, TypeError) as error:
                params, dtype = {"error": str(error) if isinstance(error, NotExportable) else
                                 f"the policy computes a value of type {eqn.outvars[0].aval.dtype} with '{name}'; expected arrays of numbers."}, "error"
            targets = [self.fresh() for _ in eqn.outvars]
            shape = _shape(getattr(eqn.outvars[0].aval, "shape", ()))
            if name == "select_n":
                params["predicate_dtype"] = np.dtype(eqn.invars[0].aval.dtype).name
            self.ops.append({"op": "add" if name == "add_any" else name, "inputs": inputs, "outputs": targets,
                             "params": params, "dtype": dtype, "shape": shape})
            env.update(zip(eqn.outvars, targets))

    def translate(self, name: str, eqn, out) -> dict[str, Any]:
        p = eqn.params
        if name in _SIMPLE:
            return {"dimension": int(p["dimension"])} if name == "concatenate" else {}
        if name == "integer_pow":
            return {"y": int(p["y"])}
        if name == "dot_general":
            (lc, rc), (lb, rb) = p["dimension_numbers"]
            lhs, rhs = eqn.invars
            spec = _einsum_spec(len(lhs.aval.shape), len(rhs.aval.shape), tuple(lc), tuple(rc), tuple(lb), tuple(rb))
            return {"einsum": spec, "lhs_contract": list(lc), "rhs_contract": list(rc), "lhs_batch": list(lb), "rhs_batch": list(rb)}
        if name == "broadcast_in_dim":
            return {"shape": _shape(p["shape"]), "broadcast_dimensions": [int(d) for d in p["broadcast_dimensions"]]}
        if name == "reshape":
            if p.get("dimensions") is not None:
                raise NotExportable("the policy reshapes with a transposition; expected plain reshapes.")
            shape = _shape(p["new_sizes"])
            if shape.count(-1) > 1:
                raise NotExportable("the policy reshapes the batch into several dimensions; expected one batch dimension.")
            return {"shape": shape}
        if name in ("reduce_sum", "reduce_max", "reduce_min"):
            return {"axes": [int(a) for a in p["axes"]]}
        if name == "convert_element_type":
            return {"dtype": np.dtype(p["new_dtype"]).name}
        if name in ("squeeze",):
            return {"dimensions": [int(d) for d in p["dimensions"]]}
        if name == "expand_dims":
            return {"dimensions": [int(d) for d in p["dimensions"]]}
        if name == "transpose":
            return {"permutation": [int(d) for d in p["permutation"]]}
        if name == "slice":
            if any(size == TRACE_BATCH for size in eqn.invars[0].aval.shape):
                limits = [-1 if size == TRACE_BATCH and limit == TRACE_BATCH else int(limit)
                          for size, limit in zip(eqn.invars[0].aval.shape, p["limit_indices"])]
            else:
                limits = [int(limit) for limit in p["limit_indices"]]
            return {"start": [int(s) for s in p["start_indices"]], "limit": limits,
                    "strides": [int(s) for s in (p["strides"] or [1] * len(limits))]}
        if name.startswith(("random_", "threefry")):
            raise NotExportable("its deterministic action still draws random numbers (a sampler's noise, operation "
                                f"'{name}'), so it is no fixed function of the observation; expected a policy whose "
                                "deterministic action depends on the observation alone.")
        raise NotExportable(f"its forward pass uses the JAX operation '{name}', which the exporter does not "
                            "translate; expected an MLP policy (dense layers, elementwise activations, layer norm).")


def policy_program(policy) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(program, constants) of a memoryless `offrl.Policy`; `NotExportable` says why not."""
    algorithm = getattr(policy.algo, "NAME", "this algorithm")
    if policy.stateful:
        raise NotExportable(
            f"{algorithm} acts on the episode's history (returns-to-go, past states and actions kept between "
            "steps), which a one-observation-in, one-action-out file cannot hold; expected a memoryless (MLP) policy."
        )
    obs_dim, action_dim = policy.spec.observation_dim, policy.spec.action_dim
    example = jax.ShapeDtypeStruct((TRACE_BATCH, obs_dim), np.float32)
    closed = jax.make_jaxpr(lambda observations: policy._act(policy.state, observations))(example)
    builder = _Builder()
    env = {var: builder.constant(value) for var, value in zip(closed.jaxpr.constvars, closed.consts)}
    env[closed.jaxpr.invars[0]] = "observations"
    builder.emit(closed.jaxpr, env)
    # Inlined calls may have emitted unused equations: keep only what the output needs.
    output = builder.read(closed.jaxpr.outvars[0], env)
    ops = _prune(builder.ops, output)
    for op in ops:
        if "error" in op["params"]:
            raise NotExportable(f"{algorithm} cannot be exported: {op['params']['error']}")
    used = {name for op in ops for name in op["inputs"]}
    constants = {name: value for name, value in builder.constants.items() if name in used}
    program = {"format_version": FORMAT_VERSION, "input": "observations", "output": output, "ops": ops,
               "constants": sorted(constants), "observation_dim": obs_dim, "action_dim": action_dim,
               "algorithm": algorithm}
    return program, constants


def _prune(ops: list[dict[str, Any]], output: str) -> list[dict[str, Any]]:
    needed, kept = {output}, []
    for op in reversed(ops):
        if any(name in needed for name in op["outputs"]):
            kept.append(op)
            needed.update(op["inputs"])
    return list(reversed(kept))


def program_json(program: dict[str, Any]) -> str:
    return json.dumps(program)
