"""A version's model card in Markdown: its data, spec, metrics and diagnosis, largest
coefficients, training curves, library versions, and a snippet that loads it as printed."""

from __future__ import annotations

import json
import pprint
from typing import Any

from service.registry.models import ModelVersion
from service.registry.schemas import version_path
from service.training.results import Diagnosis, FinalMetrics, JobMetrics

TOP_COEFFICIENTS = 10
SPLITS = ("train", "validation", "test")


def _cell(value: Any) -> str:
    """A value fit for one Markdown table cell."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return [*lines, ""]


def _json_block(value: Any) -> list[str]:
    return ["```json", json.dumps(value, indent=2, sort_keys=True), "```", ""]


def loading_snippet(model: str, version: ModelVersion) -> str:
    """Python that downloads this version and predicts one row with it, runnable as printed.

    The one place the card says how to load a model (the training core's documented loader).
    """
    example = (version.dataset or {}).get("example")
    row = (
        pprint.pformat(example, sort_dicts=False, width=92)
        if example
        else "{name: None for name in model.feature_names_in_}  # put real values here"
    )
    return "\n".join(
        [
            "from service.client import Client",
            "from service.training import load_model",
            "",
            "with Client.from_env() as rl:  # RIDGELINE_URL, RIDGELINE_API_KEY",
            f"    path = rl.download_model_artifact({model!r}, version={version.version})",
            "# load_model refuses a file whose sha256 differs from the registered one",
            f"model = load_model(path, sha256={version.artifact_sha256!r})",
            f"row = {row}",
            "print(model.predict([row]).tolist())  # missing values (None) are imputed",
        ]
    )


def _data(version: ModelVersion) -> list[str]:
    dataset = version.dataset
    target = version.spec.get("target")
    lines = ["## Data", ""]
    if dataset is None:
        return [*lines, "The dataset was deleted before this version was registered.", ""]
    rows = [
        ("dataset", f"{dataset.get('name')} (`{dataset.get('id')}`)"),
        ("sha256", f"`{dataset.get('sha256')}`"),
        ("rows", dataset.get("n_rows")),
        ("columns", dataset.get("n_columns")),
        ("target", f"`{target}` ({version.task})"),
    ]
    return [*lines, *_table(("", ""), rows)]


def _model(version: ModelVersion) -> list[str]:
    lines = ["## Model", "", "The training spec:", "", *_json_block(version.spec)]
    if version.native_params:
        lines += [
            "Its native parameters (what was fitted):",
            "",
            *_json_block(version.native_params),
        ]
    return lines


def _metrics(metrics: JobMetrics) -> list[str]:
    final = metrics.final or FinalMetrics()
    scores = {s: getattr(final, s) for s in SPLITS if getattr(final, s) is not None}
    if not scores:
        return []
    names = [n for n in next(iter(scores.values())) if n != "n"]
    rows = [(name, *(split.get(name) for split in scores.values())) for name in names]
    lines = ["## Metrics", "", *_table(("metric", *scores), rows)]
    gap = metrics.generalization_gap
    if gap is not None:
        lines += [
            f"Generalization gap: {_cell(gap.score)} in {gap.metric} (train minus validation), "
            f"{_cell(gap.loss)} in loss (validation minus train).",
            "",
        ]
    return lines + _diagnosis(metrics.diagnosis)


def _diagnosis(diagnosis: Diagnosis | None) -> list[str]:
    if diagnosis is None:
        return []
    lines = [f"Diagnosis: **{diagnosis.verdict}**.", ""]
    lines += [f"- {_cell(reason)}" for reason in diagnosis.reasons]
    if diagnosis.suggestions:
        lines += ["", "Suggested next:", ""]
        lines += [f"- {_cell(s.message)}" for s in diagnosis.suggestions]
    return [*lines, ""]


def _coefficients(metrics: JobMetrics) -> list[str]:
    coefficients = [c for c in metrics.coefficients or [] if c.value is not None]
    if not coefficients:
        return []
    # Zeros (most of an L1 model's weights) are counted, not listed.
    nonzero = [c for c in coefficients if c.value]
    largest = sorted(nonzero, key=lambda c: -abs(c.value or 0.0))[:TOP_COEFFICIENTS]
    zeros = len(coefficients) - len(nonzero)
    has_class = any(c.class_ is not None for c in largest)
    header = ("feature", "class", "value") if has_class else ("feature", "value")
    rows = [(c.feature, c.class_, c.value) if has_class else (c.feature, c.value) for c in largest]
    return [
        "## Largest coefficients",
        "",
        *_table(header, rows),
        f"{zeros} of {len(coefficients)} coefficients are exactly zero.",
        "",
    ]


def _curves(version: ModelVersion, metrics: JobMetrics) -> list[str]:
    plots = f"/v1/jobs/{version.job_id}/plots"
    found = []
    if metrics.history or metrics.best_epoch is not None:
        found.append(f"![loss curve]({plots}/loss-curve)")
    if metrics.coefficients:
        found.append(f"![coefficients]({plots}/coefficients)")
    if metrics.learning_curve:
        found.append(f"![learning curve]({plots}/learning-curve)")
    if not found:
        return []
    return ["## Training curves", "", *found, ""]


def render_card(model: str, version: ModelVersion, metrics: JobMetrics, aliases: list[str]) -> str:
    """The card of one version; `metrics` are its job's (with coefficients and curves)."""
    title = f"# {model}, version {version.version}"
    intro = [
        f"Registered {version.created_at:%Y-%m-%d %H:%M} UTC by key `{version.created_by}` "
        f"from job `{version.job_id}`; "
        + (f"aliases: {', '.join(f'`{a}`' for a in aliases)}." if aliases else "no alias."),
        "",
        f"Artifact: {version.artifact_kind}, sha256 `{version.artifact_sha256}` "
        f"([download]({version_path(model, version.version)}/artifact)).",
        "",
    ]
    if version.description:
        intro = [f"> {_cell(version.description)}", "", *intro]
    libraries = sorted((version.library_versions or {}).items())
    sections = [
        title,
        "",
        *intro,
        *_data(version),
        *_model(version),
        *_metrics(metrics),
        *_coefficients(metrics),
        *_curves(version, metrics),
        *(
            ["## Library versions", "", *_table(("library", "version"), libraries)]
            if libraries
            else []
        ),
        "## Loading it",
        "",
        "Download it and predict, from Python with this service's package installed:",
        "",
        "```python",
        loading_snippet(model, version),
        "```",
        "",
    ]
    return "\n".join(sections)
