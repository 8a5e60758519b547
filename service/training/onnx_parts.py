"""The pieces a model kind builds its ONNX graph from, and the contract the graph keeps.

The graph holds the model and its preprocessing and takes the raw input columns. Inputs: one
tensor of shape [N, 1] per feature column, named after it: ``double`` for integer, float and
boolean columns (NaN marks a missing value, as in training), ``string`` for categorical columns
(the empty string marks a missing value: ONNX strings cannot be null). Outputs:
classifiers give ``label`` [N] (the class labels themselves, typed like them) and
``probabilities`` [N, n_classes] (double, columns in the order of the model's classes);
regressors give ``variable`` [N, 1] (double).

Each model kind builds its graph (ModelKind.onnx_graph) from the parts here. Scikit-learn
parts (imputation, one-hot, scaling, polynomial features, scikit-learn estimators) are converted
by skl2onnx in double precision, so the graph computes what the service computes; float32 would
lose the small probability of a confident binary prediction (1 - p rounds away). A torch network
is exported by torch.onnx (TorchScript exporter, which needs nothing but ``onnx``) and computes
in float32 as the service does; its logits are turned into probabilities in double, as the
service does.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.pipeline import Pipeline

from service.training.errors import TrainingError

__all__ = [
    "DOUBLE",
    "FLOAT",
    "HEAD_PREFIX",
    "ONNX_OPSET",
    "SKL_PREFIX",
    "OnnxExportError",
    "convert_sklearn",
    "finish_classifier",
    "finish_regressor",
    "set_outputs",
]

#: The highest opsets the graph may use (onnxruntime >= 1.14 runs them); skl2onnx declares the
#: lowest its nodes need, and a torch network is exported at that same one so the two merge.
ONNX_OPSET = 17
ONNX_ML_OPSET = 3
MISSING_CATEGORY = ""
#: Element types of the graph's tensors.
DOUBLE, FLOAT = TensorProto.DOUBLE, TensorProto.FLOAT

#: The graph's outputs (skl2onnx's names), and prefixes that keep every inner name apart from
#: the inputs, which are the feature columns' own names.
LABEL, PROBABILITIES, VARIABLE = "label", "probabilities", "variable"
SKL_PREFIX, HEAD_PREFIX = "ridgeline.skl.", "ridgeline.head."


class OnnxExportError(TrainingError):
    """The model cannot be expressed as ONNX; the message says why."""


def _input_types(schema: Mapping[str, str]) -> list[tuple[str, Any]]:
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType

    return [
        (
            name,
            StringTensorType([None, 1]) if dtype == "categorical" else DoubleTensorType([None, 1]),
        )
        for name, dtype in schema.items()
    ]


def _convert_imputer(scope: Any, operator: Any, container: Any) -> None:
    """SimpleImputer in the input's own type: NaN (numbers) or "" (strings) -> the statistic.

    skl2onnx's own converter fills numbers through the float32-only Imputer operator and refuses
    strings whose missing marker is NaN (ours: pandas gives NaN for a missing category).
    """
    from skl2onnx.common.data_types import StringTensorType
    from skl2onnx.operator_converters.common import concatenate_variables

    imputer = operator.raw_operator
    marker = imputer.missing_values
    if not (isinstance(marker, float) and np.isnan(marker)):
        raise OnnxExportError(f"an imputer whose missing marker is {marker!r}, not NaN")
    features = concatenate_variables(scope, operator.inputs, container)
    statistics = imputer.statistics_
    output = operator.outputs[0].full_name
    fill = scope.get_unique_variable_name("fill")
    missing = scope.get_unique_variable_name("missing")
    if isinstance(operator.inputs[0].type, StringTensorType):
        if not all(isinstance(s, str) for s in statistics):
            raise OnnxExportError(
                "a categorical column had no value at all in the training split, so its "
                "imputation has no category to fill in"
            )
        container.add_initializer(
            fill, TensorProto.STRING, [1, len(statistics)], [s.encode() for s in statistics]
        )
        flag = scope.get_unique_variable_name("missing_flag")
        container.add_node(
            "LabelEncoder",
            [features],
            [flag],
            op_domain="ai.onnx.ml",
            op_version=2,
            keys_strings=[MISSING_CATEGORY],
            values_int64s=[1],
            default_int64=0,
            name=scope.get_unique_operator_name("LabelEncoder"),
        )
        container.add_node(
            "Cast",
            [flag],
            [missing],
            to=TensorProto.BOOL,
            name=scope.get_unique_operator_name("Cast"),
        )
    else:
        proto = operator.inputs[0].type.to_onnx_type().tensor_type.elem_type
        values = np.asarray(statistics, dtype=np.float64)
        container.add_initializer(fill, proto, [1, len(values)], values.tolist())
        container.add_node(
            "IsNaN", [features], [missing], name=scope.get_unique_operator_name("IsNaN")
        )
    container.add_node(
        "Where", [missing, fill, features], [output], name=scope.get_unique_operator_name("Where")
    )


def convert_sklearn(
    pipeline: Pipeline, schema: Mapping[str, str], *, classifier: Any
) -> onnx.ModelProto:
    """skl2onnx on the pipeline, raw columns in, our imputer converter in place of its own."""
    from onnx import compose
    from skl2onnx import convert_sklearn
    from sklearn.impute import SimpleImputer

    options = {id(classifier): {"zipmap": False}} if classifier is not None else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            onx, topology = convert_sklearn(
                pipeline,
                initial_types=_input_types(schema),
                target_opset={"": ONNX_OPSET, "ai.onnx.ml": ONNX_ML_OPSET},
                custom_conversion_functions={SimpleImputer: _convert_imputer},
                options=options,
                intermediate=True,
            )
    except OnnxExportError:
        raise
    except Exception as exc:
        raise OnnxExportError(f"skl2onnx could not convert the pipeline: {exc}") from exc
    compose.add_prefix_graph(onx.graph, SKL_PREFIX, rename_inputs=False, inplace=True)
    # skl2onnx makes input names C identifiers ("mean radius" -> "mean_radius"): give each input
    # its column's own name back, in the order of the feature schema.
    raw = {v.onnx_name: v.raw_name for v in topology.scopes[0].variables.values()}
    _rename_inputs(onx.graph, {i.name: raw[i.name] for i in onx.graph.input}, list(schema))
    return onx


def _rename_inputs(graph: onnx.GraphProto, names: dict[str, str], order: list[str]) -> None:
    for node in graph.node:
        node.input[:] = [names.get(name, name) for name in node.input]
    inputs = {names[i.name]: i for i in graph.input}
    for name, value in inputs.items():
        value.name = name
    reordered = [inputs[name] for name in order]
    del graph.input[:]
    graph.input.extend(reordered)


def _label_tensor(classes: list[Any]) -> onnx.TensorProto:
    """The class labels as a constant of their own type (Gather on an index returns them)."""
    name = HEAD_PREFIX + "classes"
    if all(isinstance(c, bool) for c in classes):
        return numpy_helper.from_array(np.array(classes, dtype=np.bool_), name)
    if all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return numpy_helper.from_array(np.array(classes, dtype=np.int64), name)
    if all(isinstance(c, int | float) and not isinstance(c, bool) for c in classes):
        return numpy_helper.from_array(np.array(classes, dtype=np.float64), name)
    return numpy_helper.from_array(np.array([str(c) for c in classes], dtype=object), name)


def finish_classifier(
    graph: onnx.GraphProto,
    scores: str,
    classes: list[Any],
    seen: list[int] | None,
    *,
    logits: bool,
) -> None:
    """Append probabilities over every class and the label; they become the graph's outputs.

    ``seen`` lists the classes the estimator knew (a class absent from the training split has
    probability 0, as in the service); ``logits`` means softmax in double, as a torch net's.
    """
    h = HEAD_PREFIX
    nodes: list[onnx.NodeProto] = []
    probabilities = scores
    if logits:
        nodes.append(helper.make_node("Cast", [scores], [h + "logits"], to=TensorProto.DOUBLE))
        nodes.append(helper.make_node("Softmax", [h + "logits"], [h + "softmax"], axis=1))
        probabilities = h + "softmax"
    if seen is not None and len(seen) != len(classes):
        place = np.zeros((len(seen), len(classes)))
        place[np.arange(len(seen)), seen] = 1.0
        graph.initializer.append(numpy_helper.from_array(place, h + "place"))
        nodes.append(helper.make_node("MatMul", [probabilities, h + "place"], [h + "all"]))
        probabilities = h + "all"
    labels = _label_tensor(classes)
    graph.initializer.append(labels)
    nodes += [
        helper.make_node("Identity", [probabilities], [PROBABILITIES]),
        helper.make_node(
            "ArgMax", [PROBABILITIES], [h + "index"], axis=1, keepdims=0, select_last_index=0
        ),
        helper.make_node("Gather", [labels.name, h + "index"], [LABEL], axis=0),
    ]
    graph.node.extend(nodes)
    set_outputs(
        graph,
        [
            helper.make_tensor_value_info(LABEL, labels.data_type, [None]),
            helper.make_tensor_value_info(PROBABILITIES, TensorProto.DOUBLE, [None, len(classes)]),
        ],
    )


def finish_regressor(graph: onnx.GraphProto, values: str, elem_type: int) -> None:
    """Append the double [N, 1] output of a regressor."""
    if elem_type == TensorProto.DOUBLE:
        graph.node.append(helper.make_node("Identity", [values], [VARIABLE]))
    else:
        graph.node.append(helper.make_node("Cast", [values], [VARIABLE], to=TensorProto.DOUBLE))
    set_outputs(graph, [helper.make_tensor_value_info(VARIABLE, TensorProto.DOUBLE, [None, 1])])


def set_outputs(graph: onnx.GraphProto, outputs: list[onnx.ValueInfoProto]) -> None:
    del graph.output[:]
    graph.output.extend(outputs)
