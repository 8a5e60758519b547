"""The ML part of a training request: the schema a client sends, and nothing that reads data.

Every model minimises ``mean_loss + strength * (l1_ratio*||w||_1 + (1-l1_ratio)/2*||w||_2^2)``
over weights (never biases); mean_loss is the log-loss (classification) or half the mean squared
error (regression). Each model kind (service.training.kinds) turns that one convention into its
own native parameters; resolving a spec against a dataset is service.training.resolve.

``model`` is a union discriminated by ``kind`` over the spec classes of the registered kinds,
read at validation time: service.training.kinds.registry adds each kind's class here when it
registers it (and importing service.training registers the built-in kinds), so a kind registered
later (a plugin) is accepted without editing this module.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    SerializationInfo,
    TypeAdapter,
    field_validator,
)
from pydantic_core import core_schema

from service.training.errors import SpecError

if TYPE_CHECKING:
    from pydantic.json_schema import JsonSchemaValue

__all__ = [
    "AUTO_CLASSIFICATION_MAX_INTEGER_VALUES",
    "DEFAULT_MODEL_KIND",
    "ColumnDtype",
    "ColumnSummary",
    "EarlyStopping",
    "LearningCurveSpec",
    "ModelSpec",
    "ModelSpecBase",
    "Penalty",
    "PreprocessingSpec",
    "RegularizationSpec",
    "ResolvedSpec",
    "SpecError",
    "Task",
    "TrainingSpec",
    "ValidationSpec",
    "add_model_class",
    "effective_penalty",
    "model_union",
    "remove_model_class",
]

Penalty = Literal["none", "l1", "l2", "elasticnet"]
Task = Literal["classification", "regression"]
ColumnDtype = Literal["integer", "float", "boolean", "categorical"]

#: An integer target with at most this many distinct values is treated as classes by task "auto".
AUTO_CLASSIFICATION_MAX_INTEGER_VALUES = 20

_STRICT = ConfigDict(extra="forbid")


class EarlyStopping(BaseModel):
    """Stop an MLP when the validation loss stops improving, and keep the best epoch's weights."""

    model_config = _STRICT

    patience: int = Field(
        default=10,
        ge=1,
        description="Epochs without an improvement of at least min_delta before stopping.",
    )
    min_delta: float = Field(
        default=0.0,
        ge=0,
        allow_inf_nan=False,
        description="Smallest decrease of the validation loss that counts as an improvement.",
    )


class RegularizationSpec(BaseModel):
    """The regularization block: one meaning of penalty and strength for every model family."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"penalty": "l2", "strength": 1e-3},
                {"penalty": "elasticnet", "strength": 1e-2, "l1_ratio": 0.5},
                {
                    "penalty": "l2",
                    "strength": 1e-4,
                    "dropout": 0.2,
                    "early_stopping": {"patience": 10},
                },
            ]
        },
    )

    penalty: Penalty = Field(
        default="l2",
        description=(
            "Weight penalty: 'l2' (ridge), 'l1' (lasso, gives exact zeros), 'elasticnet' "
            "(mix set by l1_ratio) or 'none'. Biases/intercepts are never penalised."
        ),
    )
    strength: float = Field(
        default=1e-4,
        ge=0,
        allow_inf_nan=False,
        description=(
            "Penalty strength lambda in mean_loss + lambda*(l1_ratio*||w||_1 + "
            "(1-l1_ratio)/2*||w||_2^2); mean_loss is the log-loss or half the MSE. "
            "Independent of the number of rows. Ignored when penalty is 'none'; 0 means no penalty."
        ),
    )
    l1_ratio: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Share of L1 in the elastic net (0 < l1_ratio < 1); only with 'elasticnet'.",
    )
    dropout: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="MLP only: dropout probability after every hidden layer.",
    )
    input_dropout: float = Field(
        default=0.0, ge=0, lt=1, description="MLP only: dropout probability applied to the inputs."
    )
    early_stopping: EarlyStopping | None = Field(
        default=None,
        description=(
            "MLP only: stop on the validation loss and restore the best weights; "
            "needs validation.fraction > 0."
        ),
    )


class ModelSpecBase(BaseModel):
    """The options of one model kind; each kind's spec class narrows ``kind`` to its name."""

    model_config = _STRICT

    kind: str = Field(description="The model kind (service.training.kinds.registry).")


#: The kind of a spec that names none.
DEFAULT_MODEL_KIND = "linear"

_MODEL_CLASSES: dict[str, type[ModelSpecBase]] = {}
_classes_lock = threading.Lock()
_union: TypeAdapter[ModelSpecBase] | None = None


def add_model_class(cls: type[ModelSpecBase]) -> None:
    """Accept ``model`` blocks of this class (its ``kind`` is ``Literal[name]``); the registry's."""
    global _union
    (name,) = cls.model_fields["kind"].annotation.__args__  # type: ignore[union-attr]
    with _classes_lock:
        _MODEL_CLASSES[name] = cls
        _union = None


def remove_model_class(kind: str) -> None:
    """Stop accepting ``model`` blocks of this kind."""
    global _union
    with _classes_lock:
        _MODEL_CLASSES.pop(kind, None)
        _union = None


def model_union() -> TypeAdapter[ModelSpecBase]:
    """The accepted spec classes as one union discriminated by ``kind`` (rebuilt on change)."""
    global _union
    with _classes_lock:
        if _union is None:
            classes = tuple(_MODEL_CLASSES.values())
            if len(classes) == 1:
                _union = TypeAdapter(classes[0])
            else:
                union = Union[classes]  # type: ignore[valid-type]  # noqa: UP007
                _union = TypeAdapter(Annotated[union, Field(discriminator="kind")])
        return _union


class _RegisteredModelSpec:
    """Validates and describes ``model`` as the discriminated union of the registered kinds."""

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        """A validator that asks the registry's current union, and a serializer that keeps every
        field of the kind's own class (not only ModelSpecBase's)."""
        return core_schema.no_info_plain_validator_function(
            _validate_model,
            serialization=core_schema.plain_serializer_function_ser_schema(
                _serialize_model, info_arg=True
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """oneOf the registered kinds' schemas with a discriminator mapping, as a static union."""
        return handler(model_union().core_schema)


def _validate_model(value: Any) -> ModelSpecBase:
    if isinstance(value, ModelSpecBase):
        return value
    model: ModelSpecBase = model_union().validate_python(value)
    return model


def _serialize_model(value: ModelSpecBase, info: SerializationInfo) -> Any:
    return value.model_dump(
        mode=info.mode,
        by_alias=bool(info.by_alias),
        exclude_unset=info.exclude_unset,
        exclude_defaults=info.exclude_defaults,
        exclude_none=info.exclude_none,
    )


def _default_model() -> ModelSpecBase:
    return _MODEL_CLASSES[DEFAULT_MODEL_KIND](kind=DEFAULT_MODEL_KIND)


#: The model block of a spec: one of the registered kinds' spec classes, chosen by ``kind``.
if TYPE_CHECKING:
    ModelSpec = ModelSpecBase
else:
    # FastAPI lists every BaseModel named in a field's annotation in the OpenAPI document, so
    # the base class would show there as a schema nothing uses; the validator returns it anyway.
    ModelSpec = Annotated[object, _RegisteredModelSpec]


class PreprocessingSpec(BaseModel):
    """How raw columns become model inputs; fitted on the training split only."""

    model_config = _STRICT

    standardize: bool = Field(
        default=True,
        description=(
            "Scale numeric columns to mean 0 and variance 1 (so one strength penalises every "
            "feature alike); with polynomial_degree > 1 the expanded features are scaled too."
        ),
    )
    polynomial_degree: int = Field(
        default=1, ge=1, le=5, description="Add products of features up to this degree (1 = none)."
    )
    impute: Literal["median", "mean"] = Field(
        default="median",
        description="Fill missing numeric values with this statistic (categorical: most frequent).",
    )


class ValidationSpec(BaseModel):
    """How rows are split into training, validation and held-out test sets."""

    model_config = _STRICT

    fraction: float = Field(
        default=0.2,
        ge=0,
        lt=1,
        allow_inf_nan=False,
        description="Share of rows held out for validation (metrics, curves, early stopping).",
    )
    test_fraction: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        allow_inf_nan=False,
        description="Share of rows held out as a test set, never used for fitting or stopping.",
    )
    stratify: bool = Field(
        default=True,
        description="Keep class proportions in every split (classification, when possible).",
    )


class LearningCurveSpec(BaseModel):
    """Refit on growing shares of the training split to tell 'more data' from 'more penalty'."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"sizes": [0.1, 0.25, 0.5, 1.0]}]}
    )

    sizes: list[Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]] = Field(
        min_length=1,
        max_length=10,
        description=(
            "Shares of the training split to train on (0 < size <= 1, 1 to 10 values; sorted and "
            "deduplicated). Each point is scored on its own training rows and on the whole "
            "validation split."
        ),
    )

    @field_validator("sizes")
    @classmethod
    def _sorted_unique(cls, sizes: list[float]) -> list[float]:
        """Sorted and deduplicated, so points come out in order and each size is fitted once."""
        return sorted(set(sizes))


class TrainingSpec(BaseModel):
    """What to learn from a table and how to regularize it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "target": "churned",
                    "model": {"kind": "linear"},
                    "regularization": {"penalty": "elasticnet", "strength": 0.01, "l1_ratio": 0.5},
                },
                {
                    "target": "price",
                    "task": "regression",
                    "model": {"kind": "mlp", "hidden_layers": [64, 32], "epochs": 200},
                    "regularization": {
                        "penalty": "l2",
                        "strength": 1e-4,
                        "dropout": 0.1,
                        "early_stopping": {"patience": 10, "min_delta": 0.0},
                    },
                },
            ]
        },
    )

    target: str = Field(min_length=1, description="Column to predict.")
    task: Literal["auto", "classification", "regression"] = Field(
        default="auto",
        description=(
            "'auto' picks classification for a categorical or boolean target, or an integer "
            f"target with at most {AUTO_CLASSIFICATION_MAX_INTEGER_VALUES} distinct values, "
            "and regression otherwise."
        ),
    )
    features: list[str] | None = Field(
        default=None, description="Input columns; default: every column except the target."
    )
    class_weight: Literal["balanced"] | None = Field(
        default=None,
        description="Classification only: 'balanced' weighs classes inversely to frequency.",
    )
    model: ModelSpec = Field(
        default_factory=_default_model, description="Model family and its options."
    )
    regularization: RegularizationSpec = Field(
        default_factory=RegularizationSpec, description="Penalty, dropout and early stopping."
    )
    preprocessing: PreprocessingSpec = Field(
        default_factory=PreprocessingSpec, description="Imputation, scaling, polynomial features."
    )
    validation: ValidationSpec = Field(
        default_factory=ValidationSpec, description="Validation and test split."
    )
    seed: int = Field(
        default=0, ge=0, le=2**32 - 1, description="Seed for splits, solvers and torch."
    )
    learning_curve: LearningCurveSpec | None = Field(
        default=None,
        description=(
            "Also refit on these shares of the training split and record train and validation "
            "scores per share (metrics.learning_curve); needs validation.fraction > 0."
        ),
    )


@dataclass(frozen=True)
class ColumnSummary:
    """What is known of a stored column without loading the data: enough to validate a spec."""

    name: str
    dtype: ColumnDtype
    #: Distinct non-missing values; None where not counted (a numeric input never needs it).
    n_unique: int | None
    n_missing: int


@dataclass
class ResolvedSpec:
    """The spec's decisions made concrete against a dataset (task, features, sizes)."""

    task: Task
    task_reason: str
    features: list[str]
    n_inputs: int
    n_parameters: int | None = None
    n_classes: int | None = None


def effective_penalty(reg: RegularizationSpec) -> tuple[Penalty, float, float]:
    """(penalty, strength, l1_ratio) after folding 'none' and strength 0 into one 'none'."""
    if reg.penalty == "none" or reg.strength == 0.0:
        return "none", 0.0, 0.0
    if reg.penalty == "l1":
        return "l1", reg.strength, 1.0
    if reg.penalty == "l2":
        return "l2", reg.strength, 0.0
    return "elasticnet", reg.strength, float(reg.l1_ratio if reg.l1_ratio is not None else 0.5)
