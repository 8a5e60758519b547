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
   - a per-epoch history without restored best weights: the validation loss *turned up*: its
     last value is at least ``VAL_LOSS_RISE`` (relative) above its minimum while the training
     loss kept falling after that epoch (reported as ``val_loss_turned_up_after_epoch``).
3. Otherwise ``"underfitting"`` when the model barely beats the baseline on its own training
   rows: score skill ``(train - baseline) / (1 - baseline)`` (accuracy; r2 for regression,
   whose baseline is 0) below ``UNDERFIT_SCORE_SKILL``, or loss skill
   ``1 - train_loss / baseline_loss`` below ``UNDERFIT_LOSS_SKILL``.
4. Otherwise ``"over-regularized"`` when the validation calibration slope (the slope of the
   target on the prediction, see metrics.calibration) exceeds
   ``1 + max(CALIBRATION_MARGIN, NOISE_Z * se)``: the model ranks new rows well but its
   probabilities (or predictions) are too flat, shrunk by a penalty stronger than the data
   needs. (On the training rows every penalised fit has a slope above 1, so only validation
   counts.) Its one suggestion is a weaker penalty.
5. Otherwise ``"good fit"``.

Suggestions name the spec field to change and the value to set: for overfitting more
strength (x``STRENGTH_STEP``), the model kind's own hints (ModelKind.overfitting_hints: dropout,
early stopping, a smaller net...) and a lower polynomial degree; for underfitting the opposite.
They are starting points for a sweep, not guarantees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from service.training.kinds import registry
from service.training.metrics import PRIMARY_METRIC
from service.training.results import (
    Diagnosis,
    EpochRecord,
    Evidence,
    JobMetrics,
    SplitMetrics,
    Suggestion,
    Verdict,
)
from service.training.spec import TrainingSpec, effective_penalty

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
#: Relative rise of a per-epoch validation loss above its minimum that counts as turning up.
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


@dataclass(frozen=True)
class _TurnUp:
    """Where the validation loss reached its minimum before it rose by ``rise``."""

    epoch: int
    rise: float


def _turned_up(history: list[EpochRecord]) -> _TurnUp | None:
    """Where the validation loss reached its minimum before rising while the train loss fell."""
    points = [
        (r.epoch, t, v)
        for r in history
        if (t := _num(r.train_loss)) is not None and (v := _num(r.val_loss)) is not None
    ]
    if len(points) < 2:
        return None
    epochs, train, val = (list(column) for column in zip(*points, strict=True))
    best = min(range(len(val)), key=val.__getitem__)
    rise = (val[-1] - val[best]) / max(abs(val[best]), 1e-12)
    if best == len(val) - 1 or rise < VAL_LOSS_RISE or train[-1] >= train[best]:
        return None
    return _TurnUp(int(epochs[best]), rise)


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def _strength_suggestion(spec: TrainingSpec, more: bool) -> Suggestion | None:
    """Strength x10 (or a first penalty) when overfitting, /10 when underfitting."""
    penalty, strength, _ = effective_penalty(spec.regularization)
    if penalty == "none":
        if not more:
            return None
        return Suggestion(
            field="regularization",
            value={"penalty": "l2", "strength": DEFAULT_STRENGTH},
            message=f"add a penalty: set regularization.penalty to 'l2' and strength to "
            f"{_fmt(DEFAULT_STRENGTH)} (then sweep it)",
        )
    if more:
        new = strength * STRENGTH_STEP
        return Suggestion(
            field="regularization.strength",
            value=new,
            message=f"raise regularization.strength x{STRENGTH_STEP:g}, from {_fmt(strength)} "
            f"to {_fmt(new)}",
        )
    new = strength / STRENGTH_STEP
    return Suggestion(
        field="regularization.strength",
        value=new,
        message=f"lower regularization.strength /{STRENGTH_STEP:g}, from {_fmt(strength)} to "
        f"{_fmt(new)}",
    )


def _degree_suggestion(spec: TrainingSpec, more: bool) -> Suggestion | None:
    """A lower polynomial degree when overfitting, a higher one when underfitting."""
    degree = spec.preprocessing.polynomial_degree
    if more and degree > 1:
        return Suggestion(
            field="preprocessing.polynomial_degree",
            value=degree - 1,
            message=f"lower preprocessing.polynomial_degree from {degree} to {degree - 1}",
        )
    if not more and degree < 5:
        return Suggestion(
            field="preprocessing.polynomial_degree",
            value=degree + 1,
            message=f"raise preprocessing.polynomial_degree from {degree} to {degree + 1} "
            "(products of features)",
        )
    return None


def _suggestions(spec: TrainingSpec, *, more: bool, turned: _TurnUp | None) -> list[Suggestion]:
    """More (or less) regularization: strength, the kind's own hints, polynomial degree."""
    kind = registry.kind_of(spec)
    hints = (
        kind.overfitting_hints(spec, turned.epoch if turned else None)
        if more
        else kind.underfitting_hints(spec)
    )
    found = [_strength_suggestion(spec, more), *hints, _degree_suggestion(spec, more)]
    return [s for s in found if s is not None]


def _gap(
    task: str,
    train: SplitMetrics,
    validation: SplitMetrics,
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


def _skill(
    score: float | None, base: float | None, loss: float | None, base_loss: float | None
) -> tuple[float | None, float | None]:
    """(score skill, loss skill) of the training fit over the baseline's."""
    score_skill = (
        (score - base) / (1.0 - base)
        if score is not None and base is not None and base < 1.0
        else None
    )
    loss_skill = (
        1.0 - loss / base_loss
        if loss is not None and base_loss is not None and base_loss > 0
        else None
    )
    return score_skill, loss_skill


def _training_evidence(metrics: JobMetrics, task: str) -> Evidence:
    """What the training rows and the baseline say, before any validation figure."""
    key = PRIMARY_METRIC[task]
    train = (metrics.final.train if metrics.final else None) or {}
    baseline = metrics.baseline
    train_score, train_loss = _num(train.get(key)), _num(train.get("loss"))
    base_score = _num(baseline.score) if baseline else None
    if base_score is None and task == "regression":
        base_score = 0.0
    base_loss = _num(baseline.loss) if baseline else None
    score_skill, loss_skill = _skill(train_score, base_score, train_loss, base_loss)
    calibration = metrics.calibration
    train_cal = calibration.train if calibration else None
    val_cal = calibration.validation if calibration else None
    evidence = Evidence(
        metric=key,
        train_score=train_score,
        validation_score=None,
        score_gap=None,
        train_loss=train_loss,
        validation_loss=None,
        loss_gap=None,
        loss_ratio=None,
        gap_measure=(
            "accuracy" if task == "classification" else "explained variance of the training target"
        ),
        gap=None,
        gap_threshold=None,
        baseline_score=base_score,
        baseline_loss=base_loss,
        train_score_skill=score_skill,
        train_loss_skill=loss_skill,
        train_calibration_slope=_num(train_cal.slope) if train_cal else None,
        validation_calibration_slope=_num(val_cal.slope) if val_cal else None,
        validation_calibration_slope_se=_num(val_cal.se) if val_cal else None,
        val_loss_turned_up_after_epoch=None,
        best_epoch=metrics.best_epoch,
    )
    if metrics.weights is not None and metrics.weights.sparsity is not None:
        evidence.sparsity = metrics.weights.sparsity
    return evidence


def _slope_band(e: Evidence) -> float | None:
    """How far from 1 the validation calibration slope must be to count (margin or noise)."""
    se = e.validation_calibration_slope_se
    if e.validation_calibration_slope is None or not se:
        return None
    return max(CALIBRATION_MARGIN, NOISE_Z * se)


def _validation_evidence(
    e: Evidence, task: str, train: SplitMetrics, validation: SplitMetrics, turned: _TurnUp | None
) -> None:
    """Add the validation figures and the gap with its threshold to the evidence."""
    val_score, val_loss = _num(validation.get(e.metric or "")), _num(validation.get("loss"))
    train_loss = e.train_loss
    gap, se = _gap(task, train, validation, e.baseline_loss)
    e.validation_score = val_score
    e.score_gap = _sub(e.train_score, val_score)
    e.validation_loss = val_loss
    e.loss_gap = _sub(val_loss, train_loss)
    e.loss_ratio = (
        val_loss / train_loss
        if val_loss is not None and train_loss is not None and train_loss > LOSS_FLOOR
        else None
    )
    e.gap = gap
    e.gap_threshold = max(OVERFIT_SCORE_GAP, NOISE_Z * se) if se is not None else None
    e.val_loss_turned_up_after_epoch = turned.epoch if turned else None


def _overfitting_reasons(e: Evidence, task: str, turned: _TurnUp | None) -> list[str]:
    """Rule 2: the gap, the classification loss ratio, the slope, the loss turning up."""
    over: list[str] = []
    gap, threshold = e.gap, e.gap_threshold
    if gap is not None and threshold is not None and gap > threshold:
        over.append(
            f"the model loses {gap:.3f} of {e.gap_measure} from training to "
            f"validation rows (more than {threshold:.3f}: {OVERFIT_SCORE_GAP} or "
            f"{NOISE_Z:g} standard errors of the validation figure)"
        )
    ratio, loss_gap = e.loss_ratio, e.loss_gap
    if (
        task == "classification"
        and ratio is not None
        and ratio > OVERFIT_LOSS_RATIO
        and loss_gap is not None
        and loss_gap > OVERFIT_LOSS_GAP
    ):
        over.append(
            f"validation log-loss is {ratio:.2f}x the training log-loss (more than "
            f"{OVERFIT_LOSS_RATIO}x) and {loss_gap:.3f} above it (more than {OVERFIT_LOSS_GAP})"
        )
    slope, band = e.validation_calibration_slope, _slope_band(e)
    if slope is not None and band is not None and slope < 1.0 - band:
        over.append(
            f"predictions are too extreme for new rows: the validation calibration slope is "
            f"{slope:.2f} (below 1 - {band:.2f})"
        )
    # With early stopping the best weights were put back: the turn is evidence, not a verdict.
    if turned is not None and e.best_epoch is None:
        over.append(
            f"the validation loss turned up after epoch {turned.epoch} "
            f"(+{turned.rise:.0%} by the last epoch) while the training loss kept falling"
        )
    return over


def _underfitting_reasons(e: Evidence) -> list[str]:
    """Rule 3: barely above the baseline on the training rows."""
    under: list[str] = []
    score_skill, loss_skill = e.train_score_skill, e.train_loss_skill
    if score_skill is not None and score_skill < UNDERFIT_SCORE_SKILL:
        under.append(
            f"train {e.metric} {e.train_score:.3f} is barely above the baseline "
            f"{e.baseline_score:.3f} (skill {score_skill:.2f} < {UNDERFIT_SCORE_SKILL})"
        )
    if loss_skill is not None and loss_skill < UNDERFIT_LOSS_SKILL:
        under.append(
            f"train loss {e.train_loss:.4g} is within {UNDERFIT_LOSS_SKILL:.0%} of the baseline "
            f"loss {e.baseline_loss:.4g}"
        )
    return under


def _over_regularized_reasons(e: Evidence, task: str) -> list[str]:
    """Rule 4: good predictions made too flat by the penalty (the calibration slope)."""
    slope, band = e.validation_calibration_slope, _slope_band(e)
    if slope is None or band is None or slope <= 1.0 + band:
        return []
    flat = (
        "its probabilities are too flat"
        if task == "classification"
        else "its predictions are too timid"
    )
    return [
        f"the model ranks new rows well, but {flat}: the validation calibration slope is "
        f"{slope:.2f} (above 1 + {band:.2f}), so the penalty shrinks them more than the data "
        "needs"
    ]


def diagnose(metrics: JobMetrics, spec: TrainingSpec, task: str) -> Diagnosis:
    """The verdict, its evidence and suggested spec changes, from a job's metrics (see above)."""
    evidence = _training_evidence(metrics, task)
    final = metrics.final
    if final is None or not final.validation:
        verdict: Verdict = "unknown"
        reasons = ["no validation split, so overfitting cannot be measured"]
        suggestions = [
            Suggestion(
                field="validation.fraction",
                value=0.2,
                message="hold out a validation split: set validation.fraction to 0.2",
            )
        ]
    else:
        turned = _turned_up(metrics.history or [])
        _validation_evidence(evidence, task, final.train or {}, final.validation, turned)
        verdict, reasons, suggestions = _verdict(evidence, task, spec, turned)
    return Diagnosis(
        verdict=verdict,
        evidence=evidence,
        reasons=reasons,
        suggestions=suggestions,
        thresholds=dict(THRESHOLDS),
    )


def _verdict(
    e: Evidence, task: str, spec: TrainingSpec, turned: _TurnUp | None
) -> tuple[Verdict, list[str], list[Suggestion]]:
    """Rules 2 to 4 on a job with a validation split: the verdict, why, and what to change."""
    over = _overfitting_reasons(e, task, turned)
    if over:
        return "overfitting", over, _suggestions(spec, more=True, turned=turned)
    under = _underfitting_reasons(e)
    if under:
        return "underfitting", under, _suggestions(spec, more=False, turned=None)
    flat = _over_regularized_reasons(e, task)
    if flat:
        weaker = _strength_suggestion(spec, more=False)
        return "over-regularized", flat, [weaker] if weaker else []
    reason = (
        "training and validation rows agree within the noise and the model clearly beats the "
        "baseline"
    )
    return "good fit", [reason], []
