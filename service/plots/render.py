"""Charts of training results as SVG or PNG bytes, safe to draw in a threaded server.

Each ``draw_*`` function returns a matplotlib ``Figure`` (what the tests inspect);
``as_bytes(figure, fmt)`` renders it. Only matplotlib's object API is used: a fresh ``Figure``
per chart drawn by its own ``FigureCanvasSVG`` / ``FigureCanvasAgg``. pyplot (a global figure
registry and GUI backends) is never imported and no backend is selected, so concurrent requests
never share a figure. Output is deterministic: SVG ids come from a fixed salt (``svg.hashsalt``,
set here once if unset) and the date/creator/software metadata are left out.

Inputs are the plain dicts the training core produces: per-epoch ``history`` rows, ``coefficients``
rows, ``learning_curve`` points, ``fit_path`` results, and sweep leaderboard rows
``{"penalty", "strength", "l1_ratio", "dropout", "metric", "mean", "std", "train_mean",
"n_folds"}``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = [
    "DPI",
    "FIGSIZE",
    "Format",
    "as_bytes",
    "draw_coefficients",
    "draw_learning_curve",
    "draw_loss_curve",
    "draw_loss_curves",
    "draw_regularization_path",
    "draw_validation_curve",
]

Format = Literal["svg", "png"]

#: Figure size in inches and resolution: 640 x 400 pixels, small and quick to draw.
FIGSIZE = (6.4, 4.0)
DPI = 100
#: Lines drawn in a regularization path at most (the largest coefficients); legend entries.
PATH_MAX_LINES = 30
LEGEND_MAX_ENTRIES = 10
#: Inches added on the right of charts whose legend sits beside the axes.
LEGEND_WIDTH = 2.2

if matplotlib.rcParams["svg.hashsalt"] is None:
    # Stable ids in SVG output (otherwise a random uuid per figure); a no-op if someone set one.
    matplotlib.rcParams["svg.hashsalt"] = "ridgeline"


def _num(value: Any) -> float | None:
    """A finite float, or None (missing values are skipped, never plotted as zero)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def _check_fmt(fmt: str) -> None:
    if fmt not in ("svg", "png"):
        raise ValueError(f"fmt must be 'svg' or 'png', got {fmt!r}")


def _figure(
    fmt: str, height: float = FIGSIZE[1], left: float = 0.12, *, legend_outside: bool = False
) -> tuple[Figure, Axes]:
    """A figure with one axes and fixed margins (a layout engine would triple the drawing time).

    With `legend_outside` the figure is wider and the axes leave its right part to the legend,
    so no key ever covers a curve.
    """
    _check_fmt(fmt)
    width = FIGSIZE[0] + (LEGEND_WIDTH if legend_outside else 0.0)
    fig = Figure(figsize=(width, height), dpi=DPI)
    bottom = 0.5 / height  # half an inch for tick labels and the x label
    top = 1.0 - 0.35 / height  # a third of an inch for the title
    right = (FIGSIZE[0] - 0.2) / width
    fig.subplots_adjust(left=left * FIGSIZE[0] / width, right=right, bottom=bottom, top=top)
    ax = fig.add_subplot()
    ax.grid(True, alpha=0.3)
    return fig, ax


def as_bytes(fig: Figure, fmt: Format) -> bytes:
    """The figure as bytes, with no timestamps or version strings (identical input, same bytes)."""
    buf = io.BytesIO()
    if fmt == "svg":
        FigureCanvasSVG(fig).print_svg(buf, metadata={"Date": None, "Creator": None})
    else:
        FigureCanvasAgg(fig).print_png(buf, metadata={"Software": None})
    return buf.getvalue()


def _xy(rows: Iterable[dict[str, Any]], x_key: str, y_key: str) -> tuple[list[float], list[float]]:
    """The (x, y) pairs of rows where both are finite numbers."""
    xs: list[float] = []
    ys: list[float] = []
    for row in rows:
        x, y = _num(row.get(x_key)), _num(row.get(y_key))
        if x is not None and y is not None:
            xs.append(x)
            ys.append(y)
    return xs, ys


def _log_x(ax: Axes) -> None:
    """A log x axis with decade ticks only (minor ticks cost more to draw than the lines)."""
    ax.set_xscale("log")
    ax.minorticks_off()


def _integer_x(ax: Axes) -> None:
    """Whole-number ticks (epochs)."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _style_keys(ax: Axes) -> None:
    """Legend keys for the line styles, so each series needs one entry (its color) only."""
    ax.plot([], [], "-", color="0.35", label="validation")
    ax.plot([], [], "--", color="0.35", label="train")


def _legend(ax: Axes, *, outside: bool = False) -> None:
    handles, labels = ax.get_legend_handles_labels()
    # The style keys first, so the entry limit never drops them.
    order = sorted(range(len(labels)), key=lambda i: labels[i] not in ("train", "validation"))
    handles, labels = [handles[i] for i in order], [labels[i] for i in order]
    if not handles:
        return
    placement: dict[str, Any] = (
        {"loc": "upper left", "bbox_to_anchor": (1.02, 1.0), "borderaxespad": 0.0}
        if outside
        else {}
    )
    ax.legend(
        handles[:LEGEND_MAX_ENTRIES], labels[:LEGEND_MAX_ENTRIES], fontsize="small", **placement
    )


def draw_loss_curve(
    history: Sequence[dict[str, Any]],
    best_epoch: int | None = None,
    title: str | None = None,
    *,
    fmt: Format = "svg",
) -> Figure:
    """Training and validation loss per epoch of one job, its best epoch marked."""
    if not history:
        raise ValueError(
            "history is empty: a loss curve needs at least one epoch (only jobs that train by "
            "epochs record one per epoch)"
        )
    fig, ax = _figure(fmt)
    ex, train = _xy(history, "epoch", "train_loss")
    vx, val = _xy(history, "epoch", "val_loss")
    if not train and not val:
        raise ValueError("history holds no finite train_loss or val_loss to plot")
    ax.plot(ex, train, "--", color="C0", label="train")
    if val:
        ax.plot(vx, val, "-", color="C1", label="validation")
    if best_epoch is not None:
        ax.axvline(best_epoch, color="0.4", linestyle=":", linewidth=1)
        at = dict(zip(vx, val, strict=True)).get(float(best_epoch))
        if at is not None:
            ax.plot([best_epoch], [at], "o", color="C1", label=f"best epoch {best_epoch}")
        else:
            ax.plot([], [], ":", color="0.4", label=f"best epoch {best_epoch}")
    _integer_x(ax)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title or "Loss per epoch")
    _legend(ax)
    return fig


def draw_loss_curves(
    series: Sequence[tuple[str, Sequence[dict[str, Any]]]],
    title: str | None = None,
    *,
    fmt: Format = "svg",
) -> Figure:
    """Several jobs' loss curves overlaid: validation solid, train dashed, one color per job."""
    if not series:
        raise ValueError("series is empty: pass at least one (label, history) pair")
    if not any(history for _, history in series):
        raise ValueError(
            "every history is empty: only jobs that train by epochs record loss curves"
        )
    fig, ax = _figure(fmt, legend_outside=True)
    for i, (label, history) in enumerate(series):
        color = f"C{i % 10}"
        tx, train = _xy(history, "epoch", "train_loss")
        vx, val = _xy(history, "epoch", "val_loss")
        ax.plot(vx, val, "-", color=color, label=label)
        ax.plot(tx, train, "--", color=color, alpha=0.8)
    _style_keys(ax)
    _integer_x(ax)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title or "Loss per epoch (validation solid, train dashed)")
    _legend(ax, outside=True)
    return fig


def _coef_label(row: dict[str, Any], multiclass: bool) -> str:
    name = str(row.get("feature"))
    return f"{name} [{row.get('class')}]" if multiclass else name


def draw_coefficients(
    coefs: Sequence[dict[str, Any]],
    top: int = 20,
    title: str | None = None,
    *,
    fmt: Format = "svg",
) -> Figure:
    """The largest non-zero coefficients as horizontal bars; the title counts the zeros left out.

    An L1 model zeroes most of its weights: bars of nothing would crowd out the ones it kept.
    """
    if not coefs:
        raise ValueError("coefs is empty: only linear models report coefficients")
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    values = [(row, _num(row.get("value"))) for row in coefs]
    n_zero = sum(1 for _, v in values if v == 0.0)
    multiclass = len({row.get("class") for row in coefs}) > 1
    nonzero = [(row, v) for row, v in values if v]
    ranked = sorted(nonzero, key=lambda rv: -abs(rv[1] or 0.0))[:top]
    ranked.reverse()  # barh draws bottom-up: the largest ends on top
    labels = [_coef_label(row, multiclass) for row, _ in ranked]
    widest = max((len(label) for label in labels), default=1)
    fig, ax = _figure(
        fmt,
        height=max(2.5, min(8.0, 1.0 + 0.25 * len(ranked))),
        left=min(0.5, 0.04 + 0.0105 * min(widest, 45)),  # about 6.7 px per character
    )
    heights = [v or 0.0 for _, v in ranked]
    colors = ["C0" if h >= 0 else "C3" for h in heights]
    ax.barh(range(len(ranked)), heights, color=colors)
    ax.set_yticks(range(len(ranked)), labels, fontsize="small")
    ax.axvline(0.0, color="0.3", linewidth=0.8)
    ax.set_xlabel("coefficient (standardized features)")
    if not ranked:
        ax.text(
            0.5, 0.5, f"all {len(coefs)} coefficients are zero", ha="center", transform=ax.transAxes
        )
    shown = (
        f"largest {len(ranked)} of {len(nonzero)} non-zero"
        if len(ranked) < len(nonzero)
        else f"{len(nonzero)} non-zero"
    )
    counted = f"{shown}; {n_zero} of {len(coefs)} zero, not shown"
    ax.set_title(f"{title} ({counted})" if title else f"Coefficients ({counted})")
    return fig


def draw_learning_curve(
    points: Sequence[dict[str, Any]],
    metric: str,
    title: str | None = None,
    *,
    fmt: Format = "svg",
) -> Figure:
    """A score against the number of training rows: train dashed, validation solid."""
    if not points:
        raise ValueError("points is empty: set learning_curve.sizes in the training spec")
    xs_t, ys_t, xs_v, ys_v = [], [], [], []
    for p in points:
        n = _num(p.get("n_train"))
        t = _num((p.get("train") or {}).get(metric))
        v = _num((p.get("validation") or {}).get(metric))
        if n is not None and t is not None:
            xs_t.append(n)
            ys_t.append(t)
        if n is not None and v is not None:
            xs_v.append(n)
            ys_v.append(v)
    if not ys_t and not ys_v:
        raise ValueError(
            f"no learning-curve point has metric {metric!r}; use a key of the points' train "
            "and validation metrics (e.g. 'accuracy', 'r2' or 'loss')"
        )
    fig, ax = _figure(fmt)
    ax.plot(xs_t, ys_t, "--o", color="C0", label="train", markersize=4)
    ax.plot(xs_v, ys_v, "-o", color="C1", label="validation", markersize=4)
    ax.set_xlabel("training rows")
    ax.set_ylabel(metric)
    ax.set_title(title or f"Learning curve ({metric})")
    _legend(ax)
    return fig


def _group_label(row: dict[str, Any]) -> str:
    """'l2', 'elasticnet l1_ratio=0.5', plus ', dropout=0.2' when there is dropout."""
    label = str(row.get("penalty"))
    ratio = _num(row.get("l1_ratio"))
    if row.get("penalty") == "elasticnet" and ratio is not None:
        label += f" l1_ratio={ratio:g}"
    dropout = _num(row.get("dropout"))
    if dropout:
        label += f", dropout={dropout:g}"
    return label


def _validation_group(ax: Axes, label: str, members: list[dict[str, Any]], color: str) -> bool:
    """One penalty's line (validation solid with error bars, train dashed); False if empty."""
    on_axis = sorted(
        (r for r in members if (_num(r.get("strength")) or 0.0) > 0),
        key=lambda r: float(r["strength"]),
    )
    plotted = False
    xs, means, stds = [], [], []
    for r in on_axis:
        mean = _num(r.get("mean"))
        if mean is not None:
            xs.append(float(r["strength"]))
            means.append(mean)
            stds.append(_num(r.get("std")) or 0.0)
    if xs:
        ax.errorbar(xs, means, yerr=stds, fmt="-o", color=color, markersize=4, capsize=3)
        ax.plot([], [], "-", color=color, label=label)
        tx, train = _xy(on_axis, "strength", "train_mean")
        ax.plot(tx, train, "--", color=color, alpha=0.8)
        plotted = True
    for r in members:
        mean = _num(r.get("mean"))
        if (_num(r.get("strength")) or 0.0) <= 0 and mean is not None:
            ax.axhline(mean, color=color, linestyle="-.", linewidth=1, label=f"{label} (mean)")
            plotted = True
    return plotted


def draw_validation_curve(
    leaderboard: Sequence[dict[str, Any]],
    metric: str,
    best: dict[str, Any] | None = None,
    title: str | None = None,
    *,
    fmt: Format = "svg",
) -> Figure:
    """Cross-validated score against strength (log x): one line per penalty, std as error bars.

    Validation is solid with error bars, train dashed in the same color; rows without a penalty
    (strength 0) have no place on a log axis and are drawn as horizontal reference lines.
    """
    if not leaderboard:
        raise ValueError("leaderboard is empty: a validation curve needs at least one scored row")
    rows = [r for r in leaderboard if r.get("metric") in (None, metric)]
    if not rows:
        found = sorted({str(r.get("metric")) for r in leaderboard})
        raise ValueError(f"no leaderboard row scores {metric!r}; rows have {found}")
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(_group_label(r), []).append(r)
    fig, ax = _figure(fmt, legend_outside=True)
    plotted = False
    for i, (label, members) in enumerate(groups.items()):
        plotted = _validation_group(ax, label, members, f"C{i % 10}") or plotted
    if not plotted:
        raise ValueError(f"no leaderboard row has a finite mean {metric!r} to plot")
    if best is not None:
        _mark_best(ax, best)
    _style_keys(ax)
    if any((_num(r.get("strength")) or 0.0) > 0 for r in rows):
        _log_x(ax)
    ax.set_xlabel("regularization strength (log scale)")
    ax.set_ylabel(metric)
    ax.set_title(title or f"Validation curve ({metric}; error bars: std across folds)")
    _legend(ax, outside=True)
    return fig


def _mark_best(ax: Axes, best: dict[str, Any]) -> None:
    """A star at the winner's strength and cross-validated score (a sweep's `best`)."""
    strength = _num(best.get("strength"))
    score = _num(best.get("cv_mean", best.get("mean")))
    if strength is None or strength <= 0 or score is None:
        return
    label = f"best: {best.get('penalty') or 'strength'} {strength:.3g}"
    ax.plot([strength], [score], "*", color="black", markersize=14, label=label, zorder=5)


def draw_regularization_path(
    path: Sequence[dict[str, Any]],
    title: str | None = None,
    *,
    penalty: str | None = None,
    top: int = PATH_MAX_LINES,
    fmt: Format = "svg",
) -> Figure:
    """Each coefficient against strength (log x), as fit_path returns them; the largest drawn.

    The title names the `penalty` the path was fitted with.
    """
    if not path:
        raise ValueError("path is empty: fit_path returns one entry per strength")
    points = [p for p in path if (_num(p.get("strength")) or 0.0) > 0]
    if not points:
        raise ValueError("the path has no strength above 0 to place on a log axis")
    multiclass = any(len({c.get("class") for c in p.get("coefficients") or []}) > 1 for p in points)
    lines: dict[str, list[tuple[float, float]]] = {}
    for p in sorted(points, key=lambda p: float(p["strength"])):
        for c in p.get("coefficients") or []:
            v = _num(c.get("value"))
            if v is not None:
                lines.setdefault(_coef_label(c, multiclass), []).append((float(p["strength"]), v))
    if not lines:
        raise ValueError("the path holds no coefficients to plot")
    ranked = sorted(lines.items(), key=lambda kv: -max(abs(v) for _, v in kv[1]))[:top]
    fig, ax = _figure(fmt, legend_outside=True)
    for i, (label, pts) in enumerate(ranked):
        ax.plot([s for s, _ in pts], [v for _, v in pts], "-", color=f"C{i % 10}", label=label)
    ax.axhline(0.0, color="0.3", linewidth=0.8)
    _log_x(ax)
    ax.set_xlabel("regularization strength (log scale)")
    ax.set_ylabel("coefficient (standardized features)")
    shown = f", largest {len(ranked)} of {len(lines)}" if len(ranked) < len(lines) else ""
    what = f"{penalty} regularization path" if penalty else "Regularization path"
    ax.set_title(f"{title}: {what}{shown}" if title else f"{what.capitalize()}{shown}")
    _legend(ax, outside=True)
    return fig
