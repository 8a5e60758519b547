"""The MLP kind: a multilayer perceptron in torch (mlp_estimator.py) with the same penalty.

The L2 part enters the loss over weight matrices only; the L1 part is a proximal soft-threshold
after each optimizer step, so weights reach exact zeros. Dropout and early stopping come on top.
``native_params["params"]`` are MLPEstimator's constructor arguments: the estimator is built from
them, so a direct MLPEstimator fit with the echoed parameters reproduces the job's model. The
artifact is a zip of safetensors weights, a JSON architecture record and the skops preprocessing.
"""

from __future__ import annotations

import hmac
import io
import itertools
import json
import warnings
import zipfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field

from service.training.errors import Problem
from service.training.kinds.base import ArtifactFormat, FitData, FitHooks, Fitted, ModelKind
from service.training.results import EpochRecord, ModelReport, Suggestion
from service.training.spec import ModelSpecBase, Task, TrainingSpec, effective_penalty

if TYPE_CHECKING:
    import onnx
    from sklearn.pipeline import Pipeline

    from service.training.artifact_io import LoadedModel

__all__ = ["MLPKind", "MLPModelSpec", "mlp_parameter_count"]

#: Dropout suggested for an overfitting MLP without dropout, and the most ever suggested.
DEFAULT_DROPOUT = 0.2
MAX_DROPOUT = 0.5
#: Patience suggested when early stopping is off.
DEFAULT_PATIENCE = 10
#: Prefix of the network's names inside the merged ONNX graph.
NET_PREFIX = "ridgeline.mlp."
#: The archive's members: the record, the weights, the preprocessing.
MEMBERS = ("architecture.json", "weights.safetensors", "preprocessing.skops")


class MLPModelSpec(ModelSpecBase):
    """A multilayer perceptron trained in torch with the same penalty plus dropout."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"kind": "mlp", "hidden_layers": [64, 32], "epochs": 50}]},
    )

    kind: Literal["mlp"] = Field(description="Multilayer perceptron.")
    hidden_layers: list[Annotated[int, Field(ge=1, le=4096)]] = Field(
        default_factory=lambda: [128, 64],
        min_length=1,
        max_length=8,
        description="Widths of the hidden layers, input side first (1 to 8 layers, 1..4096 each).",
    )
    activation: Literal["relu", "tanh", "gelu"] = Field(
        default="relu", description="Activation after every hidden layer."
    )
    epochs: int = Field(
        default=100, ge=1, le=10_000, description="Maximum number of passes over the data."
    )
    batch_size: int = Field(default=64, ge=1, le=65_536, description="Rows per optimizer step.")
    learning_rate: float = Field(
        default=1e-3, gt=0, allow_inf_nan=False, description="Optimizer step size."
    )
    optimizer: Literal["adam", "sgd"] = Field(default="adam", description="Optimizer.")


def mlp_parameter_count(n_inputs: int, hidden_layers: list[int], n_outputs: int) -> int:
    """Weights plus biases of a dense MLP with these widths."""
    widths = [n_inputs, *hidden_layers, n_outputs]
    return sum(a * b + b for a, b in itertools.pairwise(widths))


def _l1_method(optimizer: str) -> str:
    """How the L1 part is applied, in words (the proximal step in Adam's metric for Adam)."""
    text = (
        "proximal soft-threshold after each optimizer step: "
        "w <- sign(w) * max(|w| - t, 0) with t = learning_rate * l1_coefficient"
    )
    if optimizer == "adam":
        text += (
            " / (sqrt(v_hat) + eps), Adam's per-weight step size (the proximal step in "
            "Adam's metric)"
        )
    return text


def _estimator_params(spec: TrainingSpec, model: MLPModelSpec, task: Task) -> dict[str, Any]:
    """MLPEstimator's constructor arguments for this spec."""
    reg = spec.regularization
    _, strength, l1_ratio = effective_penalty(reg)
    es = reg.early_stopping
    return {
        "task": task,
        "hidden_layers": list(model.hidden_layers),
        "activation": model.activation,
        "dropout": reg.dropout,
        "input_dropout": reg.input_dropout,
        "strength": strength,
        "l1_ratio": l1_ratio,
        "epochs": model.epochs,
        "batch_size": model.batch_size,
        "learning_rate": model.learning_rate,
        "optimizer": model.optimizer,
        "early_stopping": es is not None,
        "patience": es.patience if es is not None else DEFAULT_PATIENCE,
        "min_delta": es.min_delta if es is not None else 0.0,
        "class_weight": spec.class_weight,
        "random_state": spec.seed,
        "device": "auto",
    }


class MLPKind(ModelKind[MLPModelSpec]):
    """The torch MLP: epochs, dropout and early stopping on top of the shared penalty."""

    name = "mlp"
    title = "MLP (neural net)"
    spec_class = MLPModelSpec
    artifact = ArtifactFormat(
        name="mlp-zip",
        marker="architecture.json",
        extension="zip",
        media_type="application/zip",
        description="a zip of safetensors weights, the JSON architecture and skops preprocessing",
    )
    options = frozenset({"dropout", "input_dropout", "early_stopping"})
    has_history = True
    late_warm_up: ClassVar[bool] = True
    warm_up_specs: ClassVar[tuple[dict[str, Any], ...]] = (
        {
            "model": {"kind": "mlp", "hidden_layers": [4], "epochs": 2, "batch_size": 16},
            "regularization": {"dropout": 0.1, "early_stopping": {"patience": 1}},
        },
        {
            "model": {"kind": "mlp", "hidden_layers": [4], "epochs": 1, "optimizer": "sgd"},
            "target": "amount",
        },
    )

    # -- validation and display ----------------------------------------------------------------

    def epochs(self, model: ModelSpecBase) -> int | None:
        return self.model_of(model).epochs

    def parameter_count(self, model: ModelSpecBase, n_inputs: int, n_outputs: int) -> int | None:
        return mlp_parameter_count(n_inputs, self.model_of(model).hidden_layers, n_outputs)

    def size_problem(
        self, model: ModelSpecBase, n_inputs: int, n_parameters: int, limit: int
    ) -> Problem:
        return {
            "field": "model.hidden_layers",
            "message": f"this MLP would have {n_parameters:,} parameters ({n_inputs:,} inputs "
            f"after preprocessing), more than the limit of {limit:,}; use fewer or narrower "
            "hidden layers, fewer features or a lower polynomial_degree",
        }

    def describe(self, model: ModelSpecBase) -> str:
        return f"MLP {'x'.join(str(n) for n in self.model_of(model).hidden_layers)}"

    def details(self, model: ModelSpecBase) -> str | None:
        m = self.model_of(model)
        return f"{m.epochs} epochs, batch {m.batch_size}, {m.optimizer}, {m.activation}"

    # -- fitting -------------------------------------------------------------------------------

    def native_params(self, spec: TrainingSpec, task: Task, n_train: int) -> dict[str, Any]:
        """The torch loss terms that implement the convention, and the estimator's arguments."""
        model = self.model_of(spec)
        reg = spec.regularization
        penalty, strength, l1_ratio = effective_penalty(reg)
        es = reg.early_stopping
        return {
            "family": "torch",
            "estimator": "MLPEstimator",
            "module": "service.training.kinds.mlp_estimator",
            "penalty": penalty,
            "strength": strength,
            "l1_ratio": l1_ratio,
            "n_train": int(n_train),
            "loss": "cross_entropy" if task == "classification" else "half_mse",
            "l2_coefficient": strength * (1.0 - l1_ratio),
            "l2_term": "l2_coefficient / 2 * sum of squared weights, added to the mean batch loss",
            "l1_coefficient": strength * l1_ratio,
            "l1_method": _l1_method(model.optimizer),
            "penalized": "weight matrices only (biases are not penalised)",
            "dropout": reg.dropout,
            "input_dropout": reg.input_dropout,
            "early_stopping": (
                {
                    "monitor": "val_loss",
                    "patience": es.patience,
                    "min_delta": es.min_delta,
                    "restore_best_weights": True,
                }
                if es is not None
                else None
            ),
            "hidden_layers": list(model.hidden_layers),
            "activation": model.activation,
            "optimizer": model.optimizer,
            "optimizer_params": (
                {"betas": [0.9, 0.999], "eps": 1e-8}
                if model.optimizer == "adam"
                else {"momentum": 0.9}
            ),
            "learning_rate": model.learning_rate,
            "batch_size": model.batch_size,
            "epochs": model.epochs,
            "class_weight": spec.class_weight,
            "random_state": spec.seed,
            "params": _estimator_params(spec, model, task),
        }

    def estimator_from_native(self, native: Mapping[str, Any]) -> Any:
        """MLPEstimator(**native["params"]); torch loads here, on the first MLP."""
        from service.training.kinds.mlp_estimator import MLPEstimator

        return MLPEstimator(**native["params"])

    def runtime_params(self, hooks: FitHooks) -> dict[str, Any]:
        return {"device": hooks.device} if hooks.device is not None else {}

    def fit_estimator(
        self, estimator: Any, native: dict[str, Any], data: FitData, hooks: FitHooks
    ) -> Fitted:
        """Train by epochs (validation rows feed the curves and early stopping)."""
        import numpy as np

        classification = data.task == "classification"
        estimator.fit(
            data.X_train,
            data.y_train,
            data.X_val,
            data.y_val,
            classes=np.arange(data.n_classes) if classification else None,
            on_epoch=hooks.on_epoch,
            should_stop=hooks.should_stop,
        )
        native["device"] = estimator.device_
        if not classification:
            native["target_standardization"] = {
                "mean": estimator.target_mean_,
                "scale": estimator.target_scale_,
                "note": "the net outputs mean + scale * out; the loss is half the MSE in the "
                "target's units, optimised divided by scale**2 with the penalty likewise",
            }
        report = ModelReport(
            history=[EpochRecord(**record) for record in estimator.history_],
            best_epoch=estimator.best_epoch_,
            n_epochs=estimator.n_epochs_,
        )
        return Fitted(estimator, native, estimator.weight_arrays(), report)

    # -- artifacts and export ------------------------------------------------------------------

    def dump(self, model: Any, preprocessor: Pipeline, metadata: Mapping[str, Any]) -> bytes:
        """A zip: weights.safetensors, architecture.json (with metadata), preprocessing.skops."""
        import skops.io as sio
        from safetensors.torch import save as save_tensors

        from service.training.artifact_io import ARTIFACT_FORMAT, sha256_hex, zip_write

        weights = save_tensors(model.state_tensors(), metadata={"format": "pt"})
        preprocessing = sio.dumps(preprocessor, compression=zipfile.ZIP_DEFLATED)
        record = {
            **metadata,
            "format": ARTIFACT_FORMAT,
            "artifact_kind": self.artifact.name,
            "architecture": model.architecture(),
            "members": {
                "weights.safetensors": sha256_hex(weights),
                "preprocessing.skops": sha256_hex(preprocessing),
            },
        }
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as zf:
            zip_write(zf, MEMBERS[0], json.dumps(record, indent=2, sort_keys=True).encode())
            zip_write(zf, MEMBERS[1], weights)
            zip_write(zf, MEMBERS[2], preprocessing)
        return buffer.getvalue()

    def load(self, data: bytes, archive: zipfile.ZipFile) -> LoadedModel:
        """Weights, architecture and preprocessing, each member checked against its sha256."""
        from safetensors.torch import load as load_tensors
        from sklearn.pipeline import Pipeline

        from service.training.artifact_io import (
            MAX_UNPACKED_BYTES,
            ArtifactError,
            ArtifactIntegrityError,
            LoadedModel,
            sha256_hex,
            skops_load,
        )
        from service.training.kinds.mlp_estimator import MLPEstimator

        if sum(info.file_size for info in archive.infolist()) > MAX_UNPACKED_BYTES:
            raise ArtifactError("MLP artifact unpacks to more than the allowed size")
        missing = [m for m in MEMBERS if m not in archive.namelist()]
        if missing:
            raise ArtifactError(f"MLP artifact lacks {', '.join(missing)}")
        record = json.loads(archive.read(MEMBERS[0]))
        members = {name: archive.read(name) for name in MEMBERS[1:]}
        for name, blob in members.items():
            expected = record.get("members", {}).get(name)
            if expected is None or not hmac.compare_digest(sha256_hex(blob), expected):
                raise ArtifactIntegrityError(f"MLP artifact member {name} fails its sha256 check")
        preprocessor = skops_load(members["preprocessing.skops"])
        if not isinstance(preprocessor, Pipeline):
            raise ArtifactError("MLP artifact's preprocessing is not a scikit-learn Pipeline")
        tensors = load_tensors(members["weights.safetensors"])
        estimator = MLPEstimator.from_saved(record["architecture"], tensors, record.get("classes"))
        return LoadedModel(self.artifact.name, record, preprocessor, estimator)

    def onnx_graph(self, model: LoadedModel) -> onnx.ModelProto:
        """Preprocessing by skl2onnx, the net by torch.onnx, merged; float32 like the service."""
        from onnx import compose, helper

        from service.training import onnx_parts as ox

        pre = ox.convert_sklearn(model.preprocessor, model.feature_schema, classifier=None)
        (preprocessed,) = [o.name for o in pre.graph.output]
        features = ox.HEAD_PREFIX + "features"
        pre.graph.node.append(helper.make_node("Cast", [preprocessed], [features], to=ox.FLOAT))
        ox.set_outputs(pre.graph, [helper.make_tensor_value_info(features, ox.FLOAT, None)])
        # skl2onnx declares the lowest opset its nodes need; the two graphs must declare the same.
        opset = next(o.version for o in pre.opset_import if o.domain in ("", "ai.onnx"))
        net = _torch_graph(model, opset)
        net.ir_version = pre.ir_version
        merged = compose.merge_models(pre, net, io_map=[(features, "x")], prefix2=NET_PREFIX)
        if model.task == "classification":
            ox.finish_classifier(
                merged.graph, NET_PREFIX + "y", model.classes or [], None, logits=True
            )
        else:
            ox.finish_regressor(merged.graph, NET_PREFIX + "y", ox.FLOAT)
        return merged

    # -- diagnosis -----------------------------------------------------------------------------

    def overfitting_hints(
        self, spec: TrainingSpec, turned_up_epoch: int | None
    ) -> list[Suggestion]:
        """More dropout, early stopping, a smaller net."""
        model = self.model_of(spec)
        reg = spec.regularization
        out: list[Suggestion] = []
        if reg.dropout == 0.0:
            out.append(
                Suggestion(
                    field="regularization.dropout",
                    value=DEFAULT_DROPOUT,
                    message=f"add dropout: set regularization.dropout to {DEFAULT_DROPOUT}",
                )
            )
        elif reg.dropout < MAX_DROPOUT:
            new_dropout = round(min(reg.dropout + 0.1, MAX_DROPOUT), 2)
            out.append(
                Suggestion(
                    field="regularization.dropout",
                    value=new_dropout,
                    message=f"raise regularization.dropout from {reg.dropout:g} to {new_dropout:g}",
                )
            )
        if reg.early_stopping is None:
            where = (
                f" (the validation loss turned up after epoch {turned_up_epoch})"
                if turned_up_epoch is not None
                else ""
            )
            out.append(
                Suggestion(
                    field="regularization.early_stopping",
                    value={"patience": DEFAULT_PATIENCE},
                    message=f"enable early stopping with patience {DEFAULT_PATIENCE}{where}",
                )
            )
        return out + _resized(model, smaller=True)

    def underfitting_hints(self, spec: TrainingSpec) -> list[Suggestion]:
        """No dropout, a bigger net, more epochs."""
        model = self.model_of(spec)
        reg = spec.regularization
        out: list[Suggestion] = []
        if reg.dropout > 0 or reg.input_dropout > 0:
            out.append(
                Suggestion(
                    field="regularization.dropout",
                    value=0.0,
                    message="remove dropout: set regularization.dropout (and input_dropout) to 0",
                )
            )
        out += _resized(model, smaller=False)
        epochs = min(model.epochs * 2, 10_000)
        if reg.early_stopping is None and epochs != model.epochs:
            out.append(
                Suggestion(
                    field="model.epochs",
                    value=epochs,
                    message=f"train longer: model.epochs {epochs} instead of {model.epochs}",
                )
            )
        return out


def _resized(model: MLPModelSpec, *, smaller: bool) -> list[Suggestion]:
    """Half or twice as wide a net (within 1..4096), when that changes anything."""
    now = list(model.hidden_layers)
    widths = [max(1, w // 2) if smaller else min(4096, w * 2) for w in now]
    if widths == now:
        return []
    return [
        Suggestion(
            field="model.hidden_layers",
            value=widths,
            message=f"use a {'smaller' if smaller else 'bigger'} net: hidden_layers {widths} "
            f"instead of {now}",
        )
    ]


def _torch_graph(model: LoadedModel, opset: int) -> onnx.ModelProto:
    """The MLP's network, in eval mode, outputs in the units the service predicts in (float32)."""
    import onnx
    import torch

    from service.training.onnx_parts import OnnxExportError

    net = model.estimator.module_
    regression = model.task != "classification"

    class Exported(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.net(x)
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
