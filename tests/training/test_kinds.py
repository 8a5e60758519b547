"""The model-kind registry: built-in kinds, a kind registered by the tests alone, echoed native
parameters that rebuild the fitted estimator, and the one metric registry."""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from service.training import metrics as M
from service.training.artifacts import load_artifact
from service.training.diagnosis import diagnose
from service.training.errors import SpecError
from service.training.folds import sweep_splits
from service.training.kinds import registry
from service.training.kinds.base import ModelKind
from service.training.onnx_export import OnnxExportError, export_onnx
from service.training.paths import fit_path
from service.training.preprocessing import build_preprocessor, fit_transform
from service.training.resolve import resolve_spec
from service.training.results import JobMetrics
from service.training.spec import ColumnSummary, TrainingSpec
from service.training.train import prepare, train
from tests.training.helpers import breast_cancer, diabetes, spec

SERVICE = Path(__file__).resolve().parents[2] / "service"


@pytest.fixture
def constant() -> Iterator[ModelKind[Any]]:
    """The toy kind registered for this test, and forgotten after it (importing its module is
    what registers it, as RIDGELINE_PLUGINS does in a server; here only for this test)."""
    module = importlib.import_module("tests.training.constant_kind")
    kind = registry.register(module.ConstantKind())
    yield kind
    registry.unregister(kind.name)


def test_built_in_kinds_are_registered_with_their_own_spec_classes() -> None:
    assert registry.names()[:2] == ["linear", "mlp"]
    for kind in registry.kinds():
        assert registry.get(kind.name) is kind
        assert kind.spec_class.model_fields["kind"].annotation.__args__ == (kind.name,)  # type: ignore[union-attr]
    assert registry.default_model().kind == registry.DEFAULT_KIND
    assert TrainingSpec(target="y").model.kind == registry.DEFAULT_KIND
    with pytest.raises(KeyError, match="known: linear, mlp"):
        registry.get("forest")


def test_a_kind_cannot_take_a_name_already_taken(constant: ModelKind[Any]) -> None:
    class Impostor(type(constant)):  # type: ignore[misc]
        name = "mlp"

    class OtherConstant(type(constant)):  # type: ignore[misc]
        pass

    with pytest.raises(ValueError, match="must be Literal"):
        registry.register(Impostor())
    with pytest.raises(ValueError, match="already registered"):
        registry.register(OtherConstant())
    assert registry.register(type(constant)()).name == "constant"  # the same class: fine


def test_the_spec_union_follows_the_registry(constant: ModelKind[Any]) -> None:
    parsed = spec(target="y", model={"kind": "constant"})
    assert isinstance(parsed.model, constant.spec_class)
    assert parsed.model_dump(mode="json")["model"] == {"kind": "constant"}
    schema = TrainingSpec.model_json_schema()
    mapping = schema["properties"]["model"]["discriminator"]["mapping"]
    assert set(mapping) == {"linear", "mlp", "constant"}
    registry.unregister("constant")
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        spec(target="y", model={"kind": "constant"})
    registry.register(constant)


def test_mistakes_inside_a_kind_name_the_field_as_before() -> None:
    with pytest.raises(ValidationError) as info:
        spec(target="y", model={"kind": "mlp", "epochs": 0, "depth": 3})
    locations = {".".join(map(str, e["loc"])) for e in info.value.errors()}
    assert locations == {"model.mlp.epochs", "model.mlp.depth"}


def test_options_a_kind_does_not_honour_are_named_with_the_kinds_that_do(
    constant: ModelKind[Any],
) -> None:
    columns = [ColumnSummary("x", "float", None, 0), ColumnSummary("y", "integer", 2, 0)]
    s = spec(target="y", model={"kind": "constant"}, regularization={"dropout": 0.3})
    with pytest.raises(SpecError) as info:
        resolve_spec(s, columns)
    (problem,) = info.value.problems
    assert problem["field"] == "regularization.dropout"
    assert "applies only to model.kind 'mlp'" in problem["message"]


def test_the_toy_kind_trains_predicts_reports_and_sweeps(
    constant: ModelKind[Any],
) -> None:
    table = breast_cancer()
    s = spec(target="diagnosis", model={"kind": "constant"}, validation={"test_fraction": 0.1})
    result = train(table, s)
    assert result.artifact_kind == "constant-zip"
    assert result.native_params["estimator"] == "ConstantPredictor"
    final = result.metrics["final"]
    assert set(final) == {"train", "validation", "test"}
    assert set(final["validation"]) == {"n", *(m.name for m in M.metrics_for("classification"))}
    benign = float(np.mean(np.asarray(table.column("diagnosis").to_pylist()) == "benign"))
    assert final["train"]["accuracy"] == pytest.approx(max(benign, 1 - benign), abs=0.02)
    assert result.metrics["weights"]["n_weights"] == 0
    assert result.metrics["diagnosis"]["verdict"] == "underfitting"

    model = load_artifact(result.artifact, sha256=result.artifact_sha256)
    rows = table.drop_columns(["diagnosis"]).slice(0, 3).to_pylist()
    predicted = model.predict(rows)
    assert predicted.predictions == ["benign"] * 3
    assert predicted.probabilities is not None
    assert predicted.probabilities[0]["benign"] == pytest.approx(final["train"]["accuracy"])
    with pytest.raises(OnnxExportError, match="constant kind has no ONNX"):
        export_onnx(model)

    with pytest.raises(SpecError, match="a warm-started path is for model kinds 'linear'"):
        fit_path(table, s, [0.1])
    splits = sweep_splits(table, s, folds=3, validation_fraction=None)
    folds = [train(table, s, split=split, with_artifact=False) for split in splits.splits]
    assert all(f.report.final is not None and f.report.final.validation for f in folds)


def test_a_toy_kind_sweep_is_one_trial_job_per_configuration(
    constant: ModelKind[Any],
) -> None:
    """The sweeps service asks the kind whether it fits paths; the constant does not."""
    from service.sweeps.schemas import SweepCreate
    from service.sweeps.service import expand

    body = SweepCreate.model_validate(
        {
            "dataset_id": "00000000-0000-0000-0000-000000000000",
            "target": "y",
            "model": {"kind": "constant"},
            "search": {"penalty": ["l2"], "strength": [0.1, 1.0], "dropout": [0.0, 0.5]},
        }
    )
    configs = expand(body)
    assert [c.strength for c in configs] == [1.0, 0.1]  # no dropout axis: it takes no dropout
    assert not registry.kind_of(body).supports_path


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_mlp_native_params_rebuild_the_fitted_estimator(task: str) -> None:
    """What the job echoes is what was fitted: the echoed parameters give the same predictions."""
    table, target = (
        (breast_cancer(), "diagnosis") if task == "classification" else (diabetes(), "progression")
    )
    s = spec(
        target=target,
        model={"kind": "mlp", "hidden_layers": [8], "epochs": 6, "batch_size": 32},
        regularization={
            "penalty": "elasticnet",
            "strength": 1e-3,
            "l1_ratio": 0.5,
            "dropout": 0.1,
            "early_stopping": {"patience": 2},
        },
        seed=3,
    )
    result = train(table, s)
    native = result.native_params
    assert native["params"]["early_stopping"] is True and native["params"]["random_state"] == 3

    prepared = prepare(table, s)
    split = prepared.split
    preprocessor = build_preprocessor(prepared.schema, s.preprocessing)
    frame, frame_val, frame_all = prepared.frames(
        split.train, split.validation, np.arange(len(prepared.y))
    )
    X = fit_transform(preprocessor, frame)
    X_val = preprocessor.transform(frame_val)
    rebuilt = registry.get(s.model.kind).estimator_from_native(native)
    rebuilt.fit(X, prepared.y[split.train], X_val, prepared.y[split.validation])

    job_model = load_artifact(result.artifact).estimator
    X_all = preprocessor.transform(frame_all)
    if task == "classification":
        np.testing.assert_array_equal(rebuilt.predict_proba(X_all), job_model.predict_proba(X_all))
    else:
        np.testing.assert_array_equal(rebuilt.predict(X_all), job_model.predict(X_all))
    assert rebuilt.best_epoch_ == result.metrics["best_epoch"]


def test_every_split_reports_exactly_the_registered_metrics() -> None:
    for table, target, task in (
        (breast_cancer(), "diagnosis", "classification"),
        (diabetes(), "progression", "regression"),
    ):
        final = train(table, spec(target=target)).metrics["final"]
        names = {m.name for m in M.metrics_for(task)}
        assert set(final["train"]) == {"n", *names}
        assert M.PRIMARY_METRIC[task] in names and M.SELECTION_METRIC[task] in names


def test_metric_directions() -> None:
    lower = {name for name, m in M.METRICS.items() if not m.greater_is_better}
    assert lower == {"log_loss", "loss", "rmse", "mae"}
    assert {name for name, m in M.METRICS.items() if m.needs_probabilities} == {
        "log_loss",
        "roc_auc",
        "loss",
    }
    with pytest.raises(KeyError, match="known:"):
        M.metric("auc")


def test_stored_metrics_of_any_age_read_back() -> None:
    """A row written by an earlier version (other keys, missing ones) still validates."""
    old = {"final": {"train": {"accuracy": 0.6}}, "generalization_gap": {"accuracy": 0.1}}
    metrics = JobMetrics.model_validate(old)
    assert metrics.to_json() == old
    d = diagnose(metrics, spec(target="y"), "classification")
    assert d.verdict == "unknown"


#: What names a kind: its spec, estimator or kind class, its name or artifact format as a string
#: (so any branch on it), or the MLP in prose.
KIND_NAMES = re.compile(
    r"MLPModelSpec|LinearModelSpec|MLPEstimator|MLPKind|LinearKind"
    r"|[\"'](mlp|linear|mlp-zip|skops)[\"']|\bMLPs?\b"
)
#: Files outside service/training/kinds/ allowed to name kinds, and why.
ALLOWED = {
    # The spec's schema: its field descriptions and examples show the built-in kinds.
    "training/spec.py",
}
#: Lines that match without naming a model kind.
NOT_A_KIND = (
    re.compile(r'scale: Literal\["log", "linear"\]'),  # a strength grid's spacing
    re.compile(r'"skops": _version\("skops"\)'),  # the library's version
)


def test_no_file_outside_the_kinds_names_a_kind() -> None:
    found = []
    for path in sorted(SERVICE.rglob("*")):
        relative = path.relative_to(SERVICE).as_posix()
        if path.suffix not in (".py", ".html", ".js") or relative.startswith("training/kinds/"):
            continue
        if relative in ALLOWED:
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if KIND_NAMES.search(line) and not any(p.search(line) for p in NOT_A_KIND):
                found.append(f"{relative}:{number}: {line.strip()}")
    assert found == []


#: Artifacts written by train() before the model-kinds change (commit 0211ae4: a skops pipeline
#: and an MLP zip on a small table of numbers and a category), with their predictions then.
OLD = Path(__file__).resolve().parent / "data"


@pytest.mark.parametrize("name", ["linear-classification.skops", "mlp-regression.zip"])
def test_artifacts_stored_before_the_kinds_still_load_and_predict_alike(name: str) -> None:
    recorded = json.loads((OLD / "old-artifacts.json").read_text())
    expected = recorded["artifacts"][name]
    model = load_artifact((OLD / name).read_bytes(), sha256=expected["sha256"])
    assert model.kind == expected["kind"]
    assert model.model_kind == ("linear" if name.endswith(".skops") else "mlp")
    predicted = model.predict(recorded["rows"])
    if expected["probabilities"] is None:
        np.testing.assert_allclose(predicted.predictions, expected["predictions"], rtol=1e-12)
    else:
        assert predicted.predictions == expected["predictions"]
        assert predicted.probabilities is not None
        for got, want in zip(predicted.probabilities, expected["probabilities"], strict=True):
            assert got == pytest.approx(want, rel=1e-12)
    assert export_onnx(model)  # every kind still exports the models it stored before
