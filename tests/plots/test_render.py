"""Every chart renders valid SVG and PNG bytes, deterministically, without pyplot."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

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

BEST = {"penalty": "l2", "strength": 1e-1, "cv_mean": LEADERBOARD[3]["mean"], "metric": "accuracy"}

DRAWINGS: dict[str, tuple[Callable[..., Figure], tuple[Any, ...]]] = {
    "loss_curve": (render.draw_loss_curve, (HISTORY, 7, "MLP job")),
    "loss_curves": (render.draw_loss_curves, ([("job a", HISTORY), ("job b", HISTORY[:10])],)),
    "coefficients": (render.draw_coefficients, (COEFS, 10)),
    "learning_curve": (render.draw_learning_curve, (POINTS, "accuracy")),
    "validation_curve": (render.draw_validation_curve, (LEADERBOARD, "accuracy", BEST)),
    "regularization_path": (render.draw_regularization_path, (PATH,)),
}


def _bytes(draw: Callable[..., Figure]) -> Callable[..., bytes]:
    def chart(*args: Any, fmt: render.Format = "svg", **kwargs: Any) -> bytes:
        return render.as_bytes(draw(*args, fmt=fmt, **kwargs), fmt)

    return chart


CHARTS = {name: (_bytes(draw), args) for name, (draw, args) in DRAWINGS.items()}


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


def _legend_texts(figure: Figure) -> list[str]:
    legend = figure.axes[0].get_legend()
    assert legend is not None
    return [text.get_text() for text in legend.get_texts()]


def _outside_axes(figure: Figure) -> bool:
    """The legend's box lies right of the axes: it cannot cover a curve."""
    ax = figure.axes[0]
    legend = ax.get_legend()
    assert legend is not None
    renderer = FigureCanvasAgg(figure).get_renderer()
    return bool(legend.get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1)


def test_l1_coefficients_show_the_non_zero_ones_and_count_the_zeros() -> None:
    figure = render.draw_coefficients(COEFS, top=5)
    ax = figure.axes[0]
    values = [bar.get_width() for bar in ax.patches if isinstance(bar, Rectangle)]
    assert len(values) == 5 and all(v != 0 for v in values)
    assert ax.get_title() == "Coefficients (largest 5 of 20 non-zero; 10 of 30 zero, not shown)"
    sparse = [{"feature": f"x{i}", "class": None, "value": 0.0 if i else 1.5} for i in range(40)]
    ax = render.draw_coefficients(sparse).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["x0"]
    assert ax.get_title().endswith("(1 non-zero; 39 of 40 zero, not shown)")


def test_validation_curve_marks_the_best_and_keeps_its_legend_off_the_curves() -> None:
    figure = render.draw_validation_curve(LEADERBOARD, "accuracy", BEST)
    stars = [line for line in figure.axes[0].get_lines() if line.get_marker() == "*"]
    assert len(stars) == 1
    assert np.asarray(stars[0].get_xdata()).tolist() == [1e-1]
    assert np.asarray(stars[0].get_ydata()).tolist() == [BEST["cv_mean"]]
    assert "best: l2 0.1" in _legend_texts(figure)
    assert _outside_axes(figure)
    title = figure.axes[0].get_title()
    assert title == "Validation curve (accuracy; error bars: std across folds)"


def test_regularization_path_names_its_penalty_and_keeps_its_legend_off_the_lines() -> None:
    figure = render.draw_regularization_path(PATH, penalty="l1")
    assert figure.axes[0].get_title() == "L1 regularization path"
    assert _outside_axes(figure)
    titled = render.draw_regularization_path(PATH, "sweep a", penalty="elasticnet")
    assert titled.axes[0].get_title() == "sweep a: elasticnet regularization path"


def test_overlaid_loss_curves_are_labelled_by_the_given_names() -> None:
    figure = render.draw_loss_curves([("MLP, dropout 0.5", HISTORY), ("MLP, L2", HISTORY)])
    labels = _legend_texts(figure)
    assert "MLP, dropout 0.5" in labels and "MLP, L2" in labels
    assert _outside_axes(figure)


def test_unknown_metric_or_format_is_refused() -> None:
    with pytest.raises(ValueError, match="'f1'"):
        render.draw_learning_curve(POINTS, "f1")
    with pytest.raises(ValueError, match="'f1'"):
        render.draw_validation_curve(LEADERBOARD, "f1")
    with pytest.raises(ValueError, match="fmt"):
        render.draw_loss_curve(HISTORY, fmt="jpg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="strength above 0"):
        render.draw_regularization_path([{"strength": 0.0, "coefficients": []}])


def test_rendering_never_loads_pyplot() -> None:
    code = (
        "import sys; from service.plots import render; "
        "render.as_bytes(render.draw_loss_curve("
        "[{'epoch': 1, 'train_loss': 1.0, 'val_loss': 1.0}], fmt='png'), 'png'); "
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
