"""A version's model card in Markdown: its data, spec, metrics and diagnosis, largest
coefficients, training curves, library versions, and a snippet that loads it as printed."""

from __future__ import annotations

import json
import pprint
from typing import Any

from service.registry.models import ModelVersion
from service.registry.schemas import version_path

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

    The one place the card says how to load a model: when the training core ships its own
    documented loader, only this function changes.
    """
    example = (version.dataset or {}).get("example")
    row = (
        pprint.pformat(example, sort_dicts=False, width=92)
        if example
        else "{name: None for name in model.feature_schema}  # put real values here"
    )
    return "\n".join(
        [
            "from service.client import Client",
            "from service.training import load_model",
            "",
            "with Client.from_env() as rl:  # RIDGELINE_URL, RIDGELINE_API_KEY",
            f"    path = rl.download_model_artifact({model!r}, version={version.version})",
            "# load_model refuses bytes whose sha256 differs from the registered one",
            f"model = load_model(path.read_bytes(), sha256={version.artifact_sha256!r})",
            f"row = {row}",
            "print(model.predict([row]).predictions)  # missing values (None) are imputed",
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


def _metrics(metrics: dict[str, Any]) -> list[str]:
    final = metrics.get("final") or {}
    splits = [s for s in SPLITS if isinstance(final.get(s), dict)]
    if not splits:
        return []
    names = [n for n in final[splits[0]] if n != "n"]
    rows = [(name, *(final[s].get(name) for s in splits)) for name in names]
    lines = ["## Metrics", "", *_table(("metric", *splits), rows)]
    gap = metrics.get("generalization_gap") or {}
    if gap:
        lines += [
            f"Generalization gap: {_cell(gap.get('score'))} in {gap.get('metric')} (train minus "
            f"validation), {_cell(gap.get('loss'))} in loss (validation minus train).",
            "",
        ]
    return lines + _diagnosis(metrics.get("diagnosis"))


def _diagnosis(diagnosis: Any) -> list[str]:
    if not isinstance(diagnosis, dict):
        return []
    lines = [f"Diagnosis: **{diagnosis.get('verdict', 'unknown')}**.", ""]
    lines += [f"- {_cell(reason)}" for reason in diagnosis.get("reasons") or []]
    suggestions = [s for s in diagnosis.get("suggestions") or [] if isinstance(s, dict)]
    if suggestions:
        lines += ["", "Suggested next:", ""]
        lines += [f"- {_cell(s.get('message'))}" for s in suggestions]
    return [*lines, ""]


def _coefficients(metrics: dict[str, Any]) -> list[str]:
    coefficients = [c for c in metrics.get("coefficients") or [] if c.get("value") is not None]
    if not coefficients:
        return []
    largest = sorted(coefficients, key=lambda c: -abs(c["value"]))[:TOP_COEFFICIENTS]
    zeros = sum(c["value"] == 0 for c in coefficients)
    has_class = any(c.get("class") is not None for c in largest)
    header = ("feature", "class", "value") if has_class else ("feature", "value")
    rows = [
        (c["feature"], c.get("class"), c["value"]) if has_class else (c["feature"], c["value"])
        for c in largest
    ]
    return [
        "## Largest coefficients",
        "",
        *_table(header, rows),
        f"{zeros} of {len(coefficients)} coefficients are exactly zero.",
        "",
    ]


def _curves(version: ModelVersion, metrics: dict[str, Any]) -> list[str]:
    plots = f"/v1/jobs/{version.job_id}/plots"
    found = []
    if metrics.get("best_epoch") is not None or version.spec.get("model", {}).get("kind") == "mlp":
        found.append(f"![loss curve]({plots}/loss-curve)")
    if metrics.get("coefficients"):
        found.append(f"![coefficients]({plots}/coefficients)")
    if metrics.get("learning_curve"):
        found.append(f"![learning curve]({plots}/learning-curve)")
    if not found:
        return []
    return ["## Training curves", "", *found, ""]


def render_card(
    model: str, version: ModelVersion, metrics: dict[str, Any] | None, aliases: list[str]
) -> str:
    """The card of one version; `metrics` are its job's (with coefficients and curves)."""
    metrics = metrics or {}
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
