"""Every chart renders valid SVG and PNG bytes, deterministically, without pyplot."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import pytest

from service.plots import render

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

HISTORY = [
    {"epoch": e, "train_loss": 1.0 / e, "val_loss": 0.5 + 0.6 / e + 0.02 * e} for e in range(1, 21)
]
COEFS = [
    {"feature": f"x{i}", "class": None, "value": 0.0 if i % 3 == 0 else (-1) ** i * i / 10}
    for i in range(30)
]
POINTS = [
    {
        "size": s,
        "n_train": int(400 * s),
        "train": {"accuracy": 1.0 - 0.1 * s, "loss": 0.1 + 0.2 * s},
        "validation": {"accuracy": 0.7 + 0.15 * s, "loss": 0.6 - 0.3 * s},
    }
    for s in (0.1, 0.25, 0.5, 1.0)
]
LEADERBOARD = [
    {
        "penalty": penalty,
        "strength": strength,
        "l1_ratio": ratio,
        "dropout": 0.0,
        "metric": "accuracy",
        "mean": 0.8 - 0.02 * abs(k - 3) - (0.01 if penalty == "l1" else 0.0),
        "std": 0.01 + 0.002 * k,
        "train_mean": 0.95 - 0.03 * k,
        "n_folds": 5,
    }
    for penalty, ratio in (("l2", 0.0), ("l1", 1.0), ("elasticnet", 0.5))
    for k, strength in enumerate([1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0])
] + [
    {
        "penalty": "none",
        "strength": 0.0,
        "l1_ratio": 0.0,
        "dropout": 0.0,
        "metric": "accuracy",
        "mean": 0.74,
        "std": 0.02,
        "train_mean": 0.99,
        "n_folds": 5,
    }
]
PATH = [
    {
        "strength": s,
        "penalty": "l1",
        "l1_ratio": 1.0,
        "coefficients": [
            {"feature": f"x{i}", "class": None, "value": max(0.0, (i + 1) * 0.1 - s)}
            for i in range(8)
        ],
    }
    for s in (1.0, 0.3, 0.1, 0.03, 0.01)
]

CHARTS: dict[str, tuple[Callable[..., bytes], tuple[Any, ...]]] = {
    "loss_curve": (render.loss_curve, (HISTORY, 7, "MLP job")),
    "loss_curves": (render.loss_curves, ([("job a", HISTORY), ("job b", HISTORY[:10])],)),
    "coefficients": (render.coefficients, (COEFS, 10)),
    "learning_curve": (render.learning_curve, (POINTS, "accuracy")),
    "validation_curve": (render.validation_curve, (LEADERBOARD, "accuracy", LEADERBOARD[3])),
    "regularization_path": (render.regularization_path, (PATH,)),
}


@pytest.mark.parametrize("name", sorted(CHARTS))
def test_svg_parses_and_png_has_the_signature(name: str) -> None:
    function, args = CHARTS[name]
    svg = function(*args, fmt="svg")
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    assert b"<dc:date>" not in svg  # no timestamp: the same input gives the same bytes
    assert function(*args, fmt="svg") == svg
    png = function(*args, fmt="png")
    assert png.startswith(PNG_SIGNATURE)
    assert function(*args, fmt="png") == png


@pytest.mark.parametrize("name", sorted(CHARTS))
def test_empty_input_is_a_clear_value_error(name: str) -> None:
    function, args = CHARTS[name]
    with pytest.raises(ValueError, match="empty"):
        function([], *args[1:])


def test_titles_and_counts_reach_the_chart() -> None:
    svg = render.coefficients(COEFS, top=5).decode()
    assert "10 zero of 30" in svg or "10&#160;zero" in svg or svg.count("<path") > 0
    # Text is drawn as glyph paths by default; the title's words are kept in an svg comment.
    assert "<!-- Coefficients, top 5 by |value| (10 zero of 30) -->" in svg
    curve = render.validation_curve(LEADERBOARD, "accuracy").decode()
    assert "<!-- Validation curve (accuracy; error bars: std across folds) -->" in curve


def test_unknown_metric_or_format_is_refused() -> None:
    with pytest.raises(ValueError, match="'f1'"):
        render.learning_curve(POINTS, "f1")
    with pytest.raises(ValueError, match="'f1'"):
        render.validation_curve(LEADERBOARD, "f1")
    with pytest.raises(ValueError, match="fmt"):
        render.loss_curve(HISTORY, fmt="jpg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="strength above 0"):
        render.regularization_path([{"strength": 0.0, "coefficients": []}])


def test_rendering_never_loads_pyplot() -> None:
    code = (
        "import sys; from service.plots import render; "
        "render.loss_curve([{'epoch': 1, 'train_loss': 1.0, 'val_loss': 1.0}], fmt='png'); "
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_concurrent_renders_match_serial_ones() -> None:
    """Figures are private to each call: threads drawing at once produce the serial bytes."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = [("loss_curve", "svg"), ("coefficients", "png"), ("loss_curve", "png")] * 2
    expected = {(n, f): CHARTS[n][0](*CHARTS[n][1], fmt=f) for n, f in set(jobs)}
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(
            pool.map(lambda job: CHARTS[job[0]][0](*CHARTS[job[0]][1], fmt=job[1]), jobs)
        )
    assert results == [expected[job] for job in jobs]
