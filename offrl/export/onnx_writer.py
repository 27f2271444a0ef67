"""The exported program (offrl/export/program.py) as an ONNX graph, built with the `onnx` package.

One node (or a few) per operation; constants become initializers; the input `observations` and
the output `actions` have a symbolic batch dimension. Opset 17, which onnxruntime runs on CPU.
A batch dimension in a target shape (-1) becomes 1 in Expand/Reshape targets, and ONNX's
NumPy-style broadcasting restores it, the same rule the NumPy forward pass follows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from offrl.errors import ConfigError

OPSET = 17
_UNARY = {"tanh": "Tanh", "exp": "Exp", "log": "Log", "neg": "Neg", "abs": "Abs", "sign": "Sign", "sqrt": "Sqrt",
          "logistic": "Sigmoid", "floor": "Floor", "ceil": "Ceil", "not": "Not", "stop_gradient": "Identity",
          "copy": "Identity", "copy_p": "Identity", "sin": "Sin", "cos": "Cos", "erf": "Erf"}
_BINARY = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "max": "Max", "min": "Min", "pow": "Pow",
           "gt": "Greater", "lt": "Less", "ge": "GreaterOrEqual", "le": "LessOrEqual", "eq": "Equal",
           "and": "And", "or": "Or"}


def _onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise ConfigError("Writing ONNX needs the onnx package, which is not installed; expected `pip install offrl[export]`.") from None
    return onnx, helper, numpy_helper


def program_to_onnx(program: dict[str, Any], constants: dict[str, np.ndarray]):
    """An `onnx.ModelProto` computing `program`."""
    onnx, helper, numpy_helper = _onnx()
    nodes, initializers = [], [numpy_helper.from_array(np.asarray(value), name) for name, value in constants.items()]
    counter = [0]

    def const(values, dtype=np.int64) -> str:
        counter[0] += 1
        name = f"c{counter[0]}"
        initializers.append(numpy_helper.from_array(np.asarray(values, dtype=dtype), name))
        return name

    def node(op_type, inputs, output, **attributes):
        nodes.append(helper.make_node(op_type, inputs, [output], **attributes))

    shapes = _static_shapes(program, constants)
    for op in program["ops"]:
        kind, inputs, output, params = op["op"], op["inputs"], op["outputs"][0], op["params"]
        if kind in _UNARY:
            node(_UNARY[kind], inputs, output)
        elif kind in _BINARY:
            node(_BINARY[kind], inputs, output)
        elif kind == "ne":
            node("Equal", inputs, output + "_eq")
            node("Not", [output + "_eq"], output)
        elif kind == "rsqrt":
            node("Sqrt", inputs, output + "_sqrt")
            node("Reciprocal", [output + "_sqrt"], output)
        elif kind == "square":
            node("Mul", [inputs[0], inputs[0]], output)
        elif kind == "log1p":
            node("Add", [inputs[0], const(1.0, np.float32)], output + "_plus1")
            node("Log", [output + "_plus1"], output)
        elif kind == "integer_pow":
            node("Pow", [inputs[0], const(float(params["y"]), np.float32)], output)
        elif kind == "dot_general":
            node("Einsum", inputs, output, equation=params["einsum"])
        elif kind == "broadcast_in_dim":
            target = params["shape"]
            expanded = [1] * len(target)
            source_shape = shapes.get(inputs[0])
            for source_axis, target_axis in enumerate(params["broadcast_dimensions"]):
                size = None if source_shape is None else source_shape[source_axis]
                expanded[target_axis] = -1 if size in (None, -1) else size  # -1: the batch, inferred by Reshape
            node("Reshape", [inputs[0], const(expanded)], output + "_r")
            node("Expand", [output + "_r", const([1 if size == -1 else size for size in target])], output)
        elif kind == "reshape":
            node("Reshape", [inputs[0], const(params["shape"])], output)
        elif kind in ("reduce_sum", "reduce_max", "reduce_min"):
            if kind == "reduce_sum":
                node("ReduceSum", [inputs[0], const(params["axes"])], output, keepdims=0)
            else:
                node("ReduceMax" if kind == "reduce_max" else "ReduceMin", inputs, output, axes=params["axes"], keepdims=0)
        elif kind == "convert_element_type":
            node("Cast", inputs, output, to=helper.np_dtype_to_tensor_dtype(np.dtype(params["dtype"])))
        elif kind == "select_n":
            if len(inputs) != 3:
                raise ConfigError("The policy selects among more than two values; expected at most two (jnp.where).")
            predicate = inputs[0]
            if params.get("predicate_dtype", "bool") != "bool":
                node("Cast", [predicate], output + "_p", to=onnx.TensorProto.BOOL)
                predicate = output + "_p"
            node("Where", [predicate, inputs[2], inputs[1]], output)
        elif kind == "clamp":
            node("Max", [inputs[1], inputs[0]], output + "_lo")
            node("Min", [output + "_lo", inputs[2]], output)
        elif kind == "squeeze":
            node("Squeeze", [inputs[0], const(params["dimensions"])], output)
        elif kind == "expand_dims":
            node("Unsqueeze", [inputs[0], const(params["dimensions"])], output)
        elif kind == "concatenate":
            node("Concat", inputs, output, axis=params["dimension"])
        elif kind == "transpose":
            node("Transpose", inputs, output, perm=params["permutation"])
        elif kind == "slice":
            ends = [np.iinfo(np.int64).max if limit == -1 else limit for limit in params["limit"]]
            node("Slice", [inputs[0], const(params["start"]), const(ends), const(list(range(len(ends)))), const(params["strides"])], output)
        else:
            raise ConfigError(f"The exported program has operation {kind!r}, which the ONNX writer does not translate; expected an MLP policy.")
    # The final output may still carry a size-1 batch dimension (a constant action): expand it.
    batch_of = "batch_shape"
    nodes.append(helper.make_node("Shape", ["observations"], [batch_of], start=0, end=1))
    nodes.append(helper.make_node("Concat", [batch_of, const([program["action_dim"]])], ["actions_shape"], axis=0))
    nodes.append(helper.make_node("Expand", [program["output"], "actions_shape"], ["actions"]))
    graph = helper.make_graph(
        nodes, f"offrl-{program['algorithm']}-policy",
        [helper.make_tensor_value_info("observations", onnx.TensorProto.FLOAT, ["batch", program["observation_dim"]])],
        [helper.make_tensor_value_info("actions", onnx.TensorProto.FLOAT, ["batch", program["action_dim"]])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="offrl")
    model.ir_version = 8  # onnxruntime >= 1.14 reads it
    onnx.checker.check_model(model)
    return model


def _static_shapes(program: dict[str, Any], constants: dict[str, np.ndarray]) -> dict[str, list[int]]:
    """Shapes of every value (-1 for the batch), computed once from the program."""
    shapes: dict[str, list[int]] = {name: list(np.shape(value)) for name, value in constants.items()}
    shapes[program["input"]] = [-1, program["observation_dim"]]
    for op in program["ops"]:
        shapes[op["outputs"][0]] = op.get("shape")
    return shapes
