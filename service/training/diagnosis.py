"""Overfitting or underfitting? A verdict on every job, with the evidence and concrete changes.

The rule, on the job's final metrics (``loss`` is the training objective's data term: log-loss
or half the MSE, see metrics.py; the baseline is the no-skill model of the training rows: the
majority class / class shares for classification, the training mean for regression):

1. No validation split: ``"unknown"`` (the one suggestion is to add one).
2. ``"overfitting"`` when any of:
   - the *gap* exceeds ``max(OVERFIT_SCORE_GAP, NOISE_Z * se)``, where ``se`` is the standard
     error of the validation figure, so a small validation split's noise is no verdict.
     Classification: gap = train - validation accuracy, se = sqrt(a*(1-a)/n_validation).
     Regression: gap = (validation loss - train loss) / baseline loss, the explained variance
     lost on new rows in units of the *training* target's variance (r2 itself divides by each
     split's own variance, which differs between small splits), se = validation loss /
     baseline loss * sqrt(2/n_validation);
   - classification: the validation log-loss exceeds ``OVERFIT_LOSS_RATIO`` times the training
     log-loss and exceeds it by more than ``OVERFIT_LOSS_GAP`` (a training loss below
     ``LOSS_FLOOR`` makes no ratio: the accuracy gap speaks);
   - the validation calibration slope is below ``1 - max(CALIBRATION_MARGIN, NOISE_Z * se)``:
     predictions are more extreme than new rows bear out;
   - MLP without restored best weights: the validation loss *turned up*: its last value is at
     least ``VAL_LOSS_RISE`` (relative) above its minimum while the training loss kept falling
     after that epoch (reported as ``val_loss_turned_up_after_epoch``).
3. Otherwise ``"underfitting"`` when any of:
   - the model barely beats the baseline on its own training rows: score skill
     ``(train - baseline) / (1 - baseline)`` (accuracy; r2 for regression, whose baseline is 0)
     below ``UNDERFIT_SCORE_SKILL``, or loss skill ``1 - train_loss / baseline_loss`` below
     ``UNDERFIT_LOSS_SKILL``;
   - the validation calibration slope (the slope of the target on the prediction, see
     metrics.calibration) exceeds ``1 + max(CALIBRATION_MARGIN, NOISE_Z * se)``: new rows
     would be predicted better by less shrunk predictions, so the penalty is too strong. (On
     the training rows every penalised fit has a slope above 1, so only validation counts.)
4. Otherwise ``"good fit"``.

Suggestions name the spec field to change and the value to set: for overfitting more
strength (x``STRENGTH_STEP``), dropout, early stopping, a lower polynomial degree or a smaller
net; for underfitting the opposite. They are starting points for a sweep, not guarantees.
"""

from __future__ import annotations

import math
from typing import Any

from service.training.spec import MLPModelSpec, TrainingSpec, effective_penalty

__all__ = [
    "CALIBRATION_MARGIN",
    "LOSS_FLOOR",
    "NOISE_Z",
    "OVERFIT_LOSS_GAP",
    "OVERFIT_LOSS_RATIO",
    "OVERFIT_SCORE_GAP",
    "STRENGTH_STEP",
    "THRESHOLDS",
    "UNDERFIT_LOSS_SKILL",
    "UNDERFIT_SCORE_SKILL",
    "VAL_LOSS_RISE",
    "diagnose",
]

#: Train minus validation score (accuracy or r2) above which the model is overfitting.
OVERFIT_SCORE_GAP = 0.05
#: Standard errors of the validation figure a gap must also exceed (about 97.7% one-sided).
NOISE_Z = 2.0
#: Classification: validation log-loss above this multiple of the training one is overfitting.
OVERFIT_LOSS_RATIO = 1.5
#: ...and exceeds it by at least this much: a ratio between two tiny losses is no verdict.
OVERFIT_LOSS_GAP = 0.05
#: Training losses below this are "zero" for the loss ratio (a memorised training set is caught
#: by the score gap instead).
LOSS_FLOOR = 1e-3
#: Relative rise of the MLP validation loss above its minimum that counts as turning up.
VAL_LOSS_RISE = 0.1
#: Share of the way from the baseline score to a perfect score below which the model underfits.
UNDERFIT_SCORE_SKILL = 0.1
#: Share of the baseline loss explained below which the model underfits.
UNDERFIT_LOSS_SKILL = 0.05
#: Least distance of the validation calibration slope from 1 that counts (besides noise).
CALIBRATION_MARGIN = 0.25
#: Factor by which a suggestion raises or lowers regularization.strength.
STRENGTH_STEP = 10.0
#: The strength suggested when an overfitting model has no penalty at all.
DEFAULT_STRENGTH = 1e-3
#: Dropout suggested for an overfitting MLP without dropout, and the most ever suggested.
DEFAULT_DROPOUT = 0.2
MAX_DROPOUT = 0.5
#: Patience suggested when early stopping is off.
DEFAULT_PATIENCE = 10

#: Echoed in every diagnosis, so a reader sees the rule's numbers beside the verdict.
THRESHOLDS: dict[str, float] = {
    "overfit_score_gap": OVERFIT_SCORE_GAP,
    "noise_z": NOISE_Z,
    "overfit_loss_ratio": OVERFIT_LOSS_RATIO,
    "overfit_loss_gap": OVERFIT_LOSS_GAP,
    "val_loss_rise": VAL_LOSS_RISE,
    "underfit_score_skill": UNDERFIT_SCORE_SKILL,
    "underfit_loss_skill": UNDERFIT_LOSS_SKILL,
    "calibration_margin": CALIBRATION_MARGIN,
}


def _num(value: Any) -> float | None:
    """A finite float, or None for anything else (missing, None, NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _turned_up(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Where the validation loss reached its minimum before rising while the train loss fell."""
    epochs: list[Any] = []
    train: list[float] = []
    val: list[float] = []
    for record in history:
        t, v = _num(record.get("train_loss")), _num(record.get("val_loss"))
        if t is not None and v is not None:
            epochs.append(record.get("epoch"))
            train.append(t)
            val.append(v)
    if len(val) < 2:
        return None
    best = min(range(len(val)), key=val.__getitem__)
    rise = (val[-1] - val[best]) / max(abs(val[best]), 1e-12)
    if best == len(val) - 1 or rise < VAL_LOSS_RISE or train[-1] >= train[best]:
        return None
    return {
        "epoch": epochs[best],
        "val_loss_min": val[best],
        "val_loss_last": val[-1],
        "rise": rise,
    }


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def _suggest(field: str, value: Any, message: str) -> dict[str, Any]:
    return {"field": field, "value": value, "message": message}


def _overfitting_suggestions(
    spec: TrainingSpec, turned_up: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """More regularization: strength x10, dropout, early stopping, lower degree, smaller net."""
    out: list[dict[str, Any]] = []
    reg = spec.regularization
    penalty, strength, _ = effective_penalty(reg)
    if penalty == "none":
        out.append(
            _suggest(
                "regularization",
                {"penalty": "l2", "strength": DEFAULT_STRENGTH},
                f"add a penalty: set regularization.penalty to 'l2' and strength to "
                f"{_fmt(DEFAULT_STRENGTH)} (then sweep it)",
            )
        )
    else:
        new = strength * STRENGTH_STEP
        out.append(
            _suggest(
                "regularization.strength",
                new,
                f"raise regularization.strength x{STRENGTH_STEP:g}, from {_fmt(strength)} to "
                f"{_fmt(new)}",
            )
        )
    if isinstance(spec.model, MLPModelSpec):
        if reg.dropout == 0.0:
            out.append(
                _suggest(
                    "regularization.dropout",
                    DEFAULT_DROPOUT,
                    f"add dropout: set regularization.dropout to {DEFAULT_DROPOUT}",
                )
            )
        elif reg.dropout < MAX_DROPOUT:
            new_dropout = round(min(reg.dropout + 0.1, MAX_DROPOUT), 2)
            out.append(
                _suggest(
                    "regularization.dropout",
                    new_dropout,
                    f"raise regularization.dropout from {reg.dropout:g} to {new_dropout:g}",
                )
            )
        if reg.early_stopping is None:
            where = (
                f" (the validation loss turned up after epoch {turned_up['epoch']})"
                if turned_up is not None
                else ""
            )
            out.append(
                _suggest(
                    "regularization.early_stopping",
                    {"patience": DEFAULT_PATIENCE},
                    f"enable early stopping with patience {DEFAULT_PATIENCE}{where}",
                )
            )
        smaller = [max(1, w // 2) for w in spec.model.hidden_layers]
        if smaller != list(spec.model.hidden_layers):
            out.append(
                _suggest(
                    "model.hidden_layers",
                    smaller,
                    f"use a smaller net: hidden_layers {smaller} instead of "
                    f"{list(spec.model.hidden_layers)}",
                )
            )
    degree = spec.preprocessing.polynomial_degree
    if degree > 1:
        out.append(
            _suggest(
                "preprocessing.polynomial_degree",
                degree - 1,
                f"lower preprocessing.polynomial_degree from {degree} to {degree - 1}",
            )
        )
    return out


def _underfitting_suggestions(spec: TrainingSpec) -> list[dict[str, Any]]:
    """Less regularization and more capacity: strength /10, no dropout, higher degree, wider net."""
    out: list[dict[str, Any]] = []
    reg = spec.regularization
    penalty, strength, _ = effective_penalty(reg)
    if penalty != "none":
        new = strength / STRENGTH_STEP
        out.append(
            _suggest(
                "regularization.strength",
                new,
                f"lower regularization.strength /{STRENGTH_STEP:g}, from {_fmt(strength)} to "
                f"{_fmt(new)}",
            )
        )
    if isinstance(spec.model, MLPModelSpec):
        if reg.dropout > 0 or reg.input_dropout > 0:
            out.append(
                _suggest(
                    "regularization.dropout",
                    0.0,
                    "remove dropout: set regularization.dropout (and input_dropout) to 0",
                )
            )
        bigger = [min(4096, w * 2) for w in spec.model.hidden_layers]
        if bigger != list(spec.model.hidden_layers):
            out.append(
                _suggest(
                    "model.hidden_layers",
                    bigger,
                    f"use a bigger net: hidden_layers {bigger} instead of "
                    f"{list(spec.model.hidden_layers)}",
                )
            )
        if reg.early_stopping is None:
            epochs = min(spec.model.epochs * 2, 10_000)
            if epochs != spec.model.epochs:
                out.append(
                    _suggest(
                        "model.epochs",
                        epochs,
                        f"train longer: model.epochs {epochs} instead of {spec.model.epochs}",
                    )
                )
    degree = spec.preprocessing.polynomial_degree
    if degree < 5:
        out.append(
            _suggest(
                "preprocessing.polynomial_degree",
                degree + 1,
                f"raise preprocessing.polynomial_degree from {degree} to {degree + 1} "
                "(products of features)",
            )
        )
    return out


def _gap(
    task: str,
    train: dict[str, Any],
    validation: dict[str, Any],
    base_loss: float | None,
) -> tuple[float | None, float | None]:
    """(gap, standard error of the validation figure) as rule 2 defines them."""
    n_val = _num(validation.get("n"))
    if task == "classification":
        t, v = _num(train.get("accuracy")), _num(validation.get("accuracy"))
        if t is None or v is None or not n_val:
            return None, None
        a = min(max(v, 1.0 / n_val), 1.0 - 1.0 / n_val) if n_val > 1 else 0.5
        return t - v, math.sqrt(a * (1.0 - a) / n_val)
    t, v = _num(train.get("loss")), _num(validation.get("loss"))
    if t is None or v is None or not n_val or not base_loss:
        return None, None
    return (v - t) / base_loss, v / base_loss * math.sqrt(2.0 / n_val)


def diagnose(metrics: dict[str, Any], spec: TrainingSpec, task: str) -> dict[str, Any]:
    """The verdict, its evidence and suggested spec changes, from a job's metrics (see above)."""
    key = "accuracy" if task == "classification" else "r2"
    final = metrics.get("final") or {}
    train = final.get("train") or {}
    validation = final.get("validation")
    baseline = metrics.get("baseline") or {}
    history = metrics.get("history") or []

    train_score, train_loss = _num(train.get(key)), _num(train.get("loss"))
    base_score = _num(baseline.get("score"))
    if base_score is None and task == "regression":
        base_score = 0.0
    base_loss = _num(baseline.get("loss"))
    score_skill: float | None = None
    if train_score is not None and base_score is not None and base_score < 1.0:
        score_skill = (train_score - base_score) / (1.0 - base_score)
    loss_skill: float | None = None
    if train_loss is not None and base_loss is not None and base_loss > 0:
        loss_skill = 1.0 - train_loss / base_loss
    calibration = metrics.get("calibration") or {}
    train_cal = calibration.get("train") or {}
    val_cal = calibration.get("validation") or {}
    slope, slope_se = _num(val_cal.get("slope")), _num(val_cal.get("se"))
    slope_band = (
        max(CALIBRATION_MARGIN, NOISE_Z * slope_se) if slope is not None and slope_se else None
    )

    evidence: dict[str, Any] = {
        "metric": key,
        "train_score": train_score,
        "validation_score": None,
        "score_gap": None,
        "train_loss": train_loss,
        "validation_loss": None,
        "loss_gap": None,
        "loss_ratio": None,
        "gap_measure": (
            "accuracy" if task == "classification" else "explained variance of the training target"
        ),
        "gap": None,
        "gap_threshold": None,
        "baseline_score": base_score,
        "baseline_loss": base_loss,
        "train_score_skill": score_skill,
        "train_loss_skill": loss_skill,
        "train_calibration_slope": _num(train_cal.get("slope")),
        "validation_calibration_slope": slope,
        "validation_calibration_slope_se": slope_se,
        "val_loss_turned_up_after_epoch": None,
        "best_epoch": metrics.get("best_epoch"),
    }
    weights = metrics.get("weights") or {}
    if weights.get("sparsity") is not None:
        evidence["sparsity"] = weights["sparsity"]

    if not validation:
        return {
            "verdict": "unknown",
            "evidence": evidence,
            "reasons": ["no validation split, so overfitting cannot be measured"],
            "suggestions": [
                _suggest(
                    "validation.fraction",
                    0.2,
                    "hold out a validation split: set validation.fraction to 0.2",
                )
            ],
            "thresholds": dict(THRESHOLDS),
        }

    val_score, val_loss = _num(validation.get(key)), _num(validation.get("loss"))
    loss_ratio = (
        val_loss / train_loss
        if val_loss is not None and train_loss is not None and train_loss > LOSS_FLOOR
        else None
    )
    gap, se = _gap(task, train, validation, base_loss)
    threshold = max(OVERFIT_SCORE_GAP, NOISE_Z * se) if se is not None else None
    turned = _turned_up(history)
    evidence.update(
        validation_score=val_score,
        score_gap=_sub(train_score, val_score),
        validation_loss=val_loss,
        loss_gap=_sub(val_loss, train_loss),
        loss_ratio=loss_ratio,
        gap=gap,
        gap_threshold=threshold,
        val_loss_turned_up_after_epoch=turned["epoch"] if turned else None,
    )
    restored = metrics.get("best_epoch") is not None  # early stopping put the best weights back

    over: list[str] = []
    if gap is not None and threshold is not None and gap > threshold:
        over.append(
            f"the model loses {gap:.3f} of {evidence['gap_measure']} from training to "
            f"validation rows (more than {threshold:.3f}: {OVERFIT_SCORE_GAP} or "
            f"{NOISE_Z:g} standard errors of the validation figure)"
        )
    loss_gap = _sub(val_loss, train_loss)
    if (
        task == "classification"
        and loss_ratio is not None
        and loss_ratio > OVERFIT_LOSS_RATIO
        and loss_gap is not None
        and loss_gap > OVERFIT_LOSS_GAP
    ):
        over.append(
            f"validation log-loss is {loss_ratio:.2f}x the training log-loss (more than "
            f"{OVERFIT_LOSS_RATIO}x) and {loss_gap:.3f} above it (more than {OVERFIT_LOSS_GAP})"
        )
    if slope is not None and slope_band is not None and slope < 1.0 - slope_band:
        over.append(
            f"predictions are too extreme for new rows: the validation calibration slope is "
            f"{slope:.2f} (below 1 - {slope_band:.2f})"
        )
    if turned is not None and not restored:
        over.append(
            f"the validation loss turned up after epoch {turned['epoch']} "
            f"(+{turned['rise']:.0%} by the last epoch) while the training loss kept falling"
        )
    if over:
        return {
            "verdict": "overfitting",
            "evidence": evidence,
            "reasons": over,
            "suggestions": _overfitting_suggestions(spec, turned),
            "thresholds": dict(THRESHOLDS),
        }

    under: list[str] = []
    if score_skill is not None and score_skill < UNDERFIT_SCORE_SKILL:
        under.append(
            f"train {key} {train_score:.3f} is barely above the baseline {base_score:.3f} "
            f"(skill {score_skill:.2f} < {UNDERFIT_SCORE_SKILL})"
        )
    if loss_skill is not None and loss_skill < UNDERFIT_LOSS_SKILL:
        under.append(
            f"train loss {train_loss:.4g} is within {UNDERFIT_LOSS_SKILL:.0%} of the baseline "
            f"loss {base_loss:.4g}"
        )
    if slope is not None and slope_band is not None and slope > 1.0 + slope_band:
        under.append(
            f"predictions are too timid for new rows: the validation calibration slope is "
            f"{slope:.2f} (above 1 + {slope_band:.2f}), so less shrinkage would fit them better"
        )
    if under:
        return {
            "verdict": "underfitting",
            "evidence": evidence,
            "reasons": under,
            "suggestions": _underfitting_suggestions(spec),
            "thresholds": dict(THRESHOLDS),
        }
    return {
        "verdict": "good fit",
        "evidence": evidence,
        "reasons": [
            "training and validation rows agree within the noise and the model clearly beats "
            "the baseline"
        ],
        "suggestions": [],
        "thresholds": dict(THRESHOLDS),
    }
