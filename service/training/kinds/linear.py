"""The linear kind: logistic regression or least squares (per the task), stored as scikit-learn.

The convention maps exactly onto scikit-learn (see the README): LogisticRegression takes
``C = 1/(strength*n_train)`` and ``l1_ratio`` (lbfgs, or saga with an L1 part); Ridge takes
``alpha = strength*n_train``; Lasso and ElasticNet take ``alpha = strength``. The estimator is
built *from* the echoed native parameters, so a direct scikit-learn fit with them reproduces the
model. Single L1 and elastic-net fits of one linear predictor (binary, regression) go through
glum instead (glum_fit.py), whose weights are copied into that scikit-learn estimator. The
artifact is a skops file of the whole pipeline (preprocessing and estimator).
"""

from __future__ import annotations

import json
import warnings
import zipfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from service.training.kinds import glum_fit
from service.training.kinds.base import ArtifactFormat, FitData, FitHooks, Fitted, ModelKind
from service.training.results import Coefficient, Convergence, Intercept, ModelReport
from service.training.spec import ModelSpecBase, Task, TrainingSpec, effective_penalty

if TYPE_CHECKING:
    import onnx
    from sklearn.pipeline import Pipeline

    from service.training.artifact_io import LoadedModel

__all__ = [
    "CD_MAX_ITER",
    "CD_TOL",
    "LBFGS_MAX_ITER",
    "LBFGS_TOL",
    "SAGA_MAX_ITER",
    "SAGA_TOL",
    "LinearKind",
    "LinearModelSpec",
]

# Solver settings, chosen so fits converge on standardized data; echoed in native_params.
LBFGS_MAX_ITER = 1000
LBFGS_TOL = 1e-6
SAGA_MAX_ITER = 5000
SAGA_TOL = 1e-4
CD_MAX_ITER = 10_000
CD_TOL = 1e-6

#: The scikit-learn estimators native_params may name (all in sklearn.linear_model).
ESTIMATORS = ("LogisticRegression", "LinearRegression", "Ridge", "Lasso", "ElasticNet")


class LinearModelSpec(ModelSpecBase):
    """A generalized linear model: logistic regression or least squares, per the task."""

    kind: Literal["linear"] = Field(default="linear", description="Linear model.")


def _classification_params(
    spec: TrainingSpec, penalty: str, strength: float, l1_ratio: float, n: int
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(estimator, params, notes) of the logistic regression."""
    solver = "saga" if penalty in ("l1", "elasticnet") else "lbfgs"
    params = {
        "C": None if penalty == "none" else 1.0 / (strength * n),
        "l1_ratio": l1_ratio,
        "solver": solver,
        "max_iter": SAGA_MAX_ITER if solver == "saga" else LBFGS_MAX_ITER,
        "tol": SAGA_TOL if solver == "saga" else LBFGS_TOL,
        "class_weight": spec.class_weight,
        "fit_intercept": True,
        "random_state": spec.seed,
    }
    notes: dict[str, Any] = {"formula": "C = 1 / (strength * n_train)"}
    if penalty == "none":
        notes["note"] = "no penalty: C is infinite (pass C=numpy.inf); JSON has no infinity"
    return "LogisticRegression", params, notes


def _regression_params(
    spec: TrainingSpec, penalty: str, strength: float, l1_ratio: float, n: int
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(estimator, params, notes) of least squares with the spec's penalty."""
    if penalty == "none":
        return (
            "LinearRegression",
            {"fit_intercept": True},
            {"note": "no penalty: ordinary least squares"},
        )
    if penalty == "l2":
        params: dict[str, Any] = {
            "alpha": strength * n,
            "solver": "cholesky",
            "fit_intercept": True,
            "random_state": spec.seed,
        }
        return "Ridge", params, {"formula": "alpha = strength * n_train"}
    params = {
        "alpha": strength,
        "max_iter": CD_MAX_ITER,
        "tol": CD_TOL,
        "selection": "cyclic",
        "fit_intercept": True,
        "random_state": spec.seed,
    }
    if penalty == "elasticnet":
        params["l1_ratio"] = l1_ratio
    return ("Lasso" if penalty == "l1" else "ElasticNet"), params, {"formula": "alpha = strength"}


class LinearKind(ModelKind[LinearModelSpec]):
    """Linear models through scikit-learn; the kind that fits warm-started paths in sweeps."""

    name = "linear"
    title = "linear (logistic / least squares)"
    spec_class = LinearModelSpec
    artifact = ArtifactFormat(
        name="skops",
        marker="schema.json",
        extension="skops",
        media_type="application/octet-stream",
        description="a scikit-learn pipeline saved with skops",
    )
    option_notes: ClassVar[Mapping[str, str]] = {
        "early_stopping": "linear models are fitted to convergence"
    }
    supports_path = True
    engines = frozenset({"local", "spark"})  # service/training/engines/spark_linear.py
    warm_up_specs: ClassVar[tuple[dict[str, Any], ...]] = (
        {"regularization": {"penalty": "l2", "strength": 0.01}},
        {"regularization": {"penalty": "l1", "strength": 0.01}},
        {"regularization": {"penalty": "elasticnet", "strength": 0.01, "l1_ratio": 0.5}},
        {"regularization": {"penalty": "l1", "strength": 0.01}, "target": "amount"},
        {"regularization": {"penalty": "l2", "strength": 0.01}, "target": "amount"},
    )

    def native_params(self, spec: TrainingSpec, task: Task, n_train: int) -> dict[str, Any]:
        """Map the convention onto scikit-learn's linear estimators (see the README)."""
        penalty, strength, l1_ratio = effective_penalty(spec.regularization)
        n = max(int(n_train), 1)
        mapping = _classification_params if task == "classification" else _regression_params
        estimator, params, notes = mapping(spec, penalty, strength, l1_ratio, n)
        return {
            "family": "sklearn",
            "module": "sklearn.linear_model",
            "penalty": penalty,
            "strength": strength,
            "l1_ratio": l1_ratio,
            "n_train": n,
            "estimator": estimator,
            **notes,
            "params": params,
        }

    def native_params_for(self, spec: TrainingSpec, data: FitData) -> dict[str, Any]:
        """scikit-learn's mapping, or glum's for an L1 part on one linear predictor."""
        native = super().native_params_for(spec, data)
        if glum_fit.takes(native, data.task, data.y_train):
            return glum_fit.glum_native(native, spec, data.task)
        return native

    def estimator_from_native(self, native: Mapping[str, Any]) -> Any:
        """The unfitted estimator that native_params describes (C None means C=inf)."""
        import numpy as np
        from sklearn import linear_model

        if glum_fit.is_glum(native):
            return glum_fit.glum_estimator(native)
        name = native["estimator"]
        if name not in ESTIMATORS:
            raise ValueError(f"native_params name {name!r}, not one of {', '.join(ESTIMATORS)}")
        params = dict(native["params"])
        if name == "LogisticRegression" and params.get("C") is None:
            params["C"] = np.inf
        return getattr(linear_model, name)(**params)

    def fit_estimator(
        self, estimator: Any, native: dict[str, Any], data: FitData, hooks: FitHooks
    ) -> Fitted:
        """Fit to convergence; report coefficients by input and class, and the solver's effort."""
        import numpy as np
        from sklearn.exceptions import ConvergenceWarning

        from service.training import metrics as M

        if glum_fit.is_glum(native):
            estimator, messages = glum_fit.fit_glum(estimator, native, data.X_train, data.y_train)
        else:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                estimator.fit(data.X_train, data.y_train)
            messages = [
                str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)
            ]
        coef = np.asarray(estimator.coef_)
        # Rows belong to the classes the training rows hold (a class absent from them has none).
        classes = data.classes
        labels = None if classes is None else [classes[int(c)] for c in estimator.classes_]
        intercept = np.atleast_1d(np.asarray(estimator.intercept_, dtype=np.float64))
        report = ModelReport(
            coefficients=[Coefficient(**c) for c in M.coefficients(coef, data.names, labels)],
            intercepts=[Intercept(**i) for i in M.intercepts(intercept, labels)],
            best_epoch=None,
            convergence=_convergence(estimator, native, messages),
        )
        return Fitted(estimator, native, [coef], report)

    def dump(self, model: Any, preprocessor: Pipeline, metadata: Mapping[str, Any]) -> bytes:
        """A skops file holding the fitted pipeline and its metadata as a JSON string."""
        import skops.io as sio
        from sklearn.pipeline import Pipeline

        from service.training.artifact_io import ARTIFACT_FORMAT

        pipeline = Pipeline([("preprocess", preprocessor), ("model", model)])
        meta = {**metadata, "format": ARTIFACT_FORMAT, "artifact_kind": self.artifact.name}
        payload = {"metadata_json": json.dumps(meta, sort_keys=True), "pipeline": pipeline}
        data: bytes = sio.dumps(payload, compression=zipfile.ZIP_DEFLATED)
        return data

    def load(self, data: bytes, archive: zipfile.ZipFile) -> LoadedModel:
        """The pipeline and metadata of a skops artifact, its types checked by the allowlist."""
        from sklearn.pipeline import Pipeline

        from service.training.artifact_io import ArtifactError, LoadedModel, skops_load

        obj = skops_load(data)
        if not isinstance(obj, dict) or "metadata_json" not in obj or "pipeline" not in obj:
            raise ArtifactError("skops artifact does not hold a Ridgeline model")
        metadata = json.loads(obj["metadata_json"])
        pipeline = obj["pipeline"]
        if not isinstance(pipeline, Pipeline) or "preprocess" not in pipeline.named_steps:
            raise ArtifactError("skops artifact does not hold a Ridgeline pipeline")
        preprocessor = pipeline.named_steps["preprocess"]
        return LoadedModel(self.artifact.name, metadata, preprocessor, pipeline[-1])

    def onnx_graph(self, model: LoadedModel) -> onnx.ModelProto:
        """skl2onnx on the whole pipeline in double precision, then the shared output head."""
        from sklearn import linear_model
        from sklearn.pipeline import Pipeline

        from service.training import onnx_parts as ox

        estimator = model.estimator
        exportable = tuple(getattr(linear_model, name) for name in ESTIMATORS)
        if not isinstance(estimator, exportable):
            raise ox.OnnxExportError(f"there is no ONNX converter for {type(estimator).__name__}")
        classification = model.task == "classification"
        pipeline = Pipeline([("preprocess", model.preprocessor), ("model", estimator)])
        onx = ox.convert_sklearn(
            pipeline, model.feature_schema, classifier=estimator if classification else None
        )
        if classification:
            seen = [int(c) for c in estimator.classes_]
            ox.finish_classifier(
                onx.graph, ox.SKL_PREFIX + "probabilities", model.classes or [], seen, logits=False
            )
        else:
            ox.finish_regressor(onx.graph, ox.SKL_PREFIX + "variable", ox.DOUBLE)
        return onx


def _convergence(model: Any, native: dict[str, Any], caught: list[str]) -> Convergence:
    """Iterations used against the cap, and any convergence warning the solver raised."""
    import numpy as np

    n_iter = getattr(model, "n_iter_", None)
    n_iter_value = int(np.max(n_iter)) if n_iter is not None else None
    max_iter = native["params"].get("max_iter")
    converged = not caught and (n_iter_value is None or max_iter is None or n_iter_value < max_iter)
    return Convergence(n_iter=n_iter_value, max_iter=max_iter, converged=converged, warnings=caught)
