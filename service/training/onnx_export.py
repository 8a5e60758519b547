"""A loaded model as one ONNX graph, preprocessing included, that takes the raw input columns.

The model's kind builds the graph (ModelKind.onnx_graph, from the pieces in onnx_parts, whose
docstring states the graph's inputs and outputs); this module names it, strips what varies
between exports and checks it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import onnx

from service.training.kinds import registry
from service.training.onnx_parts import (
    LABEL,
    MISSING_CATEGORY,
    ONNX_OPSET,
    PROBABILITIES,
    VARIABLE,
    OnnxExportError,
)

if TYPE_CHECKING:
    from service.training.artifact_io import LoadedModel
    from service.training.kinds.base import ModelKind

__all__ = ["ONNX_OPSET", "OnnxExportError", "export_onnx"]


def _kind_of(model: LoadedModel) -> ModelKind[Any]:
    """The kind that trained the model (from its saved spec), else the one its format names."""
    name = model.model_kind
    if name in registry.names():
        return registry.get(name)
    for kind in registry.kinds():
        if kind.artifact.name == model.kind:
            return kind
    raise OnnxExportError(f"no ONNX export for a model of kind {name or model.kind!r}")


def export_onnx(model: LoadedModel, *, name: str = "ridgeline") -> bytes:
    """The model, preprocessing included, as ONNX bytes; raises OnnxExportError."""
    taken = sorted({LABEL, PROBABILITIES, VARIABLE} & set(model.feature_schema))
    if taken:
        raise OnnxExportError(
            f"the feature column {taken[0]!r} has the name of an ONNX output of the model; "
            "rename the column in the data and train again to export it"
        )
    onx = _kind_of(model).onnx_graph(model)
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
