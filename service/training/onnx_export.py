"""A loaded model as one ONNX graph, preprocessing included, that takes the raw input columns.

Inputs: one tensor of shape [N, 1] per feature column, named after it: ``double`` for integer,
float and boolean columns (NaN marks a missing value, as in training), ``string`` for categorical
columns (the empty string marks a missing value: ONNX strings cannot be null). Outputs:
classifiers give ``label`` [N] (the class labels themselves, typed like them) and
``probabilities`` [N, n_classes] (double, columns in the order of the model's classes);
regressors give ``variable`` [N, 1] (double).

The scikit-learn part (imputation, one-hot, scaling, polynomial features and, for linear models,
the estimator) is converted by skl2onnx in double precision, so the graph computes what the
service computes; float32 would lose the small probability of a confident binary prediction
(1 - p rounds away). The MLP's network is exported by torch.onnx (TorchScript exporter, which
needs nothing but ``onnx``) and computes in float32 as the service does; its logits are turned
into probabilities in double, as the service does.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.linear_model import ElasticNet, Lasso, LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import Pipeline

from service.training.errors import TrainingError

if TYPE_CHECKING:
    from service.training.artifacts import LoadedModel

__all__ = ["ONNX_OPSET", "OnnxExportError", "export_onnx"]

#: The highest opsets the graph may use (onnxruntime >= 1.14 runs them); skl2onnx declares the
#: lowest its nodes need, and the MLP's network is exported at that same one so the two merge.
ONNX_OPSET = 17
ONNX_ML_OPSET = 3
#: Linear estimators skl2onnx converts in double precision (what the training core fits).
EXPORTABLE_LINEAR = (LogisticRegression, LinearRegression, Ridge, Lasso, ElasticNet)
MISSING_CATEGORY = ""

#: The graph's outputs (skl2onnx's names), and prefixes that keep every inner name apart from
#: the inputs, which are the feature columns' own names.
LABEL, PROBABILITIES, VARIABLE = "label", "probabilities", "variable"
_SKL, _MLP, _HEAD = "ridgeline.skl.", "ridgeline.mlp.", "ridgeline.head."


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


def _convert_sklearn(
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
    compose.add_prefix_graph(onx.graph, _SKL, rename_inputs=False, inplace=True)
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


def _torch_graph(model: LoadedModel, opset: int) -> onnx.ModelProto:
    """The MLP's network, in eval mode, outputs in the units the service predicts in (float32)."""
    import torch

    net = model.estimator.module_
    regression = model.task != "classification"

    class Exported(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.net(x)
            if regression:
                out = out * self.net.target_scale + self.net.target_mean
            return out

    module = Exported().eval()
    buffer = io.BytesIO()
    sample = torch.zeros(2, int(model.estimator.n_features_in_))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (sample,),
                buffer,  # type: ignore[arg-type]  # the TorchScript exporter writes to files too
                dynamo=False,
                input_names=["x"],
                output_names=["y"],
                dynamic_axes={"x": {0: "N"}, "y": {0: "N"}},
                opset_version=opset,
            )
    except Exception as exc:
        raise OnnxExportError(f"torch.onnx could not export the network: {exc}") from exc
    return onnx.load_from_string(buffer.getvalue())


def _label_tensor(classes: list[Any]) -> onnx.TensorProto:
    """The class labels as a constant of their own type (Gather on an index returns them)."""
    name = _HEAD + "classes"
    if all(isinstance(c, bool) for c in classes):
        return numpy_helper.from_array(np.array(classes, dtype=np.bool_), name)
    if all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return numpy_helper.from_array(np.array(classes, dtype=np.int64), name)
    if all(isinstance(c, int | float) and not isinstance(c, bool) for c in classes):
        return numpy_helper.from_array(np.array(classes, dtype=np.float64), name)
    return numpy_helper.from_array(np.array([str(c) for c in classes], dtype=object), name)


def _finish_classifier(
    graph: onnx.GraphProto,
    scores: str,
    classes: list[Any],
    seen: list[int] | None,
    *,
    logits: bool,
) -> None:
    """Append probabilities over every class and the label; they become the graph's outputs.

    ``seen`` lists the classes the estimator knew (a class absent from the training split has
    probability 0, as in the service); ``logits`` means softmax in double, as the MLP does.
    """
    nodes: list[onnx.NodeProto] = []
    probabilities = scores
    if logits:
        nodes.append(helper.make_node("Cast", [scores], [_HEAD + "logits"], to=TensorProto.DOUBLE))
        nodes.append(helper.make_node("Softmax", [_HEAD + "logits"], [_HEAD + "softmax"], axis=1))
        probabilities = _HEAD + "softmax"
    if seen is not None and len(seen) != len(classes):
        place = np.zeros((len(seen), len(classes)))
        place[np.arange(len(seen)), seen] = 1.0
        graph.initializer.append(numpy_helper.from_array(place, _HEAD + "place"))
        nodes.append(helper.make_node("MatMul", [probabilities, _HEAD + "place"], [_HEAD + "all"]))
        probabilities = _HEAD + "all"
    labels = _label_tensor(classes)
    graph.initializer.append(labels)
    nodes += [
        helper.make_node("Identity", [probabilities], [PROBABILITIES]),
        helper.make_node(
            "ArgMax", [PROBABILITIES], [_HEAD + "index"], axis=1, keepdims=0, select_last_index=0
        ),
        helper.make_node("Gather", [labels.name, _HEAD + "index"], [LABEL], axis=0),
    ]
    graph.node.extend(nodes)
    _set_outputs(
        graph,
        [
            helper.make_tensor_value_info(LABEL, labels.data_type, [None]),
            helper.make_tensor_value_info(PROBABILITIES, TensorProto.DOUBLE, [None, len(classes)]),
        ],
    )


def _finish_regressor(graph: onnx.GraphProto, values: str, elem_type: int) -> None:
    """Append the double [N, 1] output of a regressor."""
    if elem_type == TensorProto.DOUBLE:
        graph.node.append(helper.make_node("Identity", [values], [VARIABLE]))
    else:
        graph.node.append(helper.make_node("Cast", [values], [VARIABLE], to=TensorProto.DOUBLE))
    _set_outputs(graph, [helper.make_tensor_value_info(VARIABLE, TensorProto.DOUBLE, [None, 1])])


def _set_outputs(graph: onnx.GraphProto, outputs: list[onnx.ValueInfoProto]) -> None:
    del graph.output[:]
    graph.output.extend(outputs)


def _linear_model(model: LoadedModel) -> onnx.ModelProto:
    estimator = model.estimator
    if not isinstance(estimator, EXPORTABLE_LINEAR):
        raise OnnxExportError(f"there is no ONNX converter for {type(estimator).__name__}")
    classification = model.task == "classification"
    pipeline = Pipeline([("preprocess", model.preprocessor), ("model", estimator)])
    onx = _convert_sklearn(
        pipeline, model.feature_schema, classifier=estimator if classification else None
    )
    if classification:
        seen = [int(c) for c in estimator.classes_]
        _finish_classifier(
            onx.graph, _SKL + "probabilities", model.classes or [], seen, logits=False
        )
    else:
        _finish_regressor(onx.graph, _SKL + "variable", TensorProto.DOUBLE)
    return onx


def _mlp_model(model: LoadedModel) -> onnx.ModelProto:
    from onnx import compose

    pre = _convert_sklearn(model.preprocessor, model.feature_schema, classifier=None)
    (preprocessed,) = [o.name for o in pre.graph.output]
    features = _HEAD + "features"
    pre.graph.node.append(
        helper.make_node("Cast", [preprocessed], [features], to=TensorProto.FLOAT)
    )
    _set_outputs(pre.graph, [helper.make_tensor_value_info(features, TensorProto.FLOAT, None)])
    # skl2onnx declares the lowest opset its nodes need; the two graphs must declare the same.
    opset = next(o.version for o in pre.opset_import if o.domain in ("", "ai.onnx"))
    net = _torch_graph(model, opset)
    net.ir_version = pre.ir_version
    merged = compose.merge_models(pre, net, io_map=[(features, "x")], prefix2=_MLP)
    if model.task == "classification":
        _finish_classifier(merged.graph, _MLP + "y", model.classes or [], None, logits=True)
    else:
        _finish_regressor(merged.graph, _MLP + "y", TensorProto.FLOAT)
    return merged


def export_onnx(model: LoadedModel, *, name: str = "ridgeline") -> bytes:
    """The model, preprocessing included, as ONNX bytes; raises OnnxExportError."""
    taken = sorted({LABEL, PROBABILITIES, VARIABLE} & set(model.feature_schema))
    if taken:
        raise OnnxExportError(
            f"the feature column {taken[0]!r} has the name of an ONNX output of the model; "
            "rename the column in the data and train again to export it"
        )
    if model.kind == "mlp-zip":
        onx = _mlp_model(model)
    elif model.kind == "skops":
        onx = _linear_model(model)
    else:
        raise OnnxExportError(f"no ONNX export for artifacts of kind {model.kind!r}")
    onx.graph.name = name
    # torch leaves source locations in doc strings (paths of this server, varying per export);
    # without them the same model always exports to the same bytes.
    onx.graph.doc_string = ""
    for node in onx.graph.node:
        node.doc_string = ""
    onx.producer_name = "ridgeline"
    onx.doc_string = (
        "Inputs: one [N, 1] tensor per feature column (double; string for categorical columns). "
        "Missing values: NaN for numbers, the empty string for categories."
    )
    meta = {
        "task": model.task,
        "target": model.target,
        "classes": json.dumps(model.classes),
        "feature_schema": json.dumps(model.feature_schema),
        "missing_category": MISSING_CATEGORY,
    }
    del onx.metadata_props[:]
    onnx.helper.set_model_props(onx, meta)
    try:
        onnx.checker.check_model(onx)
    except onnx.checker.ValidationError as exc:
        raise OnnxExportError(f"the exported graph is not valid ONNX: {exc}") from exc
    return onx.SerializeToString()
