"""The dataset card (README.md with the YAML header the Hugging Face Hub reads) and manifest.json.
Neither holds a clock reading or an export id, so the same inputs give the same bytes."""
from __future__ import annotations

import json
from importlib import metadata

import yaml

from curation.exports.containers import shard_glob
from curation.exports.tables import Table, hf_features

FORMAT_TITLES = {
    "pickapic": "Pick-a-Pic-style pairwise preferences",
    "visionprefer": "VisionPrefer-style per-aspect image scores with derived pairs",
    "pamela": "PAMELA-style personal ratings",
    "trl": "TRL-style prompt / chosen / rejected preferences",
}


def code_version() -> str:
    try:
        return f"prefstudio {metadata.version('prefstudio')}"
    except metadata.PackageNotFoundError:
        return "prefstudio (not installed)"


def export_notes(tables: list[Table]) -> list[str]:
    """What the tables say about how the dataset was made, each once, in table order."""
    return list(dict.fromkeys(note for table in tables for note in table.notes))


def manifest_build(*, export, tables: list[Table], files: list[dict], rows: dict) -> dict:
    run = export.filter_run
    return {
        "format": export.format,
        "container": export.container,
        "project": export.project.slug,
        "filter_run": None if run is None else {"id": run.pk, "name": run.name, "version": run.version,
                                                "rules": run.rules},
        "options": export.options,
        "code_version": code_version(),
        "rows": rows,
        "notes": export_notes(tables),
        "files": sorted(files, key=lambda f: f["path"]),
    }


def manifest_bytes(manifest: dict) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def card_bytes(*, export, tables: list[Table], schemas: dict, rows: dict, files: list[dict]) -> bytes:
    """The card lists the configs and splits that have rows (empty ones have no files)."""
    run = export.filter_run
    project = export.project
    split_bytes: dict[tuple, int] = {}
    for entry in files:
        if entry.get("config"):
            key = (entry["config"], entry["split"])
            split_bytes[key] = split_bytes.get(key, 0) + entry["bytes"]
    configs: dict[str, list[Table]] = {}
    for table in (t for t in tables if rows[t.config][t.split]):
        configs.setdefault(table.config, []).append(table)
    header = {
        "license": export.options.get("license", "other"),
        "pretty_name": f"{project.name}: {FORMAT_TITLES[export.format]}",
        "tags": ["prefstudio", "preference", "text-to-image", export.format],
        "configs": [{"config_name": name, **({"default": True} if i == 0 else {}),
                     "data_files": [{"split": t.split, "path": shard_glob(export.container, t)} for t in group]}
                    for i, (name, group) in enumerate(configs.items())],
        "dataset_info": [{"config_name": name,
                          "features": [{"name": k, **_card_feature(v)}
                                       for k, v in hf_features(schemas[(group[0].config, group[0].split)],
                                                               group[0].images).items()],
                          "splits": [{"name": t.split, "num_bytes": split_bytes.get((t.config, t.split), 0),
                                      "num_examples": rows[t.config][t.split]} for t in group]}
                         for name, group in configs.items()],
    }
    lines = ["---", yaml.safe_dump(header, sort_keys=False, allow_unicode=True, width=120).rstrip(), "---", "",
             f"# {header['pretty_name']}", "",
             f"Exported by PrefStudio from project `{project.slug}` as `{export.format}` in `{export.container}` "
             f"files{' with embedded images' if export.options.get('images') == 'embed' else ' with image references'}.",
             "People appear only under stable pseudonymous ids, never by username or email.", "",
             "## Counts", "", "| config | split | rows |", "|---|---|---|"]
    for config, splits in rows.items():
        for split, count in splits.items():
            lines.append(f"| {config} | {split} | {count} |")
    notes = export_notes(tables)
    if notes:
        lines += ["", "## Notes", "", *(f"- {note}" for note in notes)]
    for name, group in configs.items():
        lines += ["", f"## Columns of `{name}`", "", "| column | meaning |", "|---|---|"]
        for column, meaning in (group[0].description or {}).items():
            lines.append(f"| `{column}` | {meaning} |")
    lines += ["", "## Curation", ""]
    if run is None:
        lines.append("No filter run: every live human judgment is included (undone ones and those of suspended "
                     "annotators are not).")
    else:
        summary = run.summary or {}
        lines += [f"Filter run `{run.name}` v{run.version}: {summary.get('kept', '?')} units kept, "
                  f"{summary.get('dropped', '?')} dropped, of {summary.get('units', '?')}.", "",
                  f"- Krippendorff's alpha: {_figure(summary.get('alpha'))} "
                  f"(95% CI {_figure((summary.get('alpha_ci') or [None, None])[0])} to "
                  f"{_figure((summary.get('alpha_ci') or [None, None])[1])})",
                  f"- consensus: {summary.get('consensus_method', run.rules.get('consensus', '?'))}", ""]
        by_aspect = summary.get("agreement_by_aspect") or []
        if by_aspect:
            lines += ["Agreement per aspect (all live human pairwise judgments, before the run left anyone out):", "",
                      "| aspect | judgments | Krippendorff's alpha (95% CI) | Fleiss' kappa |", "|---|---|---|---|"]
            for row in by_aspect:
                low, high = (row.get("alpha_ci") or [None, None])[:2]
                lines.append(f"| {row['aspect']} | {row.get('judgments', '?')} | {_figure(row.get('alpha'))} "
                             f"({_figure(low)} to {_figure(high)}) | {_figure(row.get('fleiss_kappa'))} |")
            lines.append("")
        lines += ["Rules:", "", "```json", json.dumps(run.rules, indent=2, sort_keys=True), "```"]
    lines += ["", "## Files", "", "`manifest.json` lists every file with its sha256 and row count; a dataset is "
              "complete exactly when its manifest is present.", ""]
    return "\n".join(lines).encode()


def _figure(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _card_feature(feature: dict) -> dict:
    """The card's form of a feature: `dtype: string`, `image`, or `sequence: ...`."""
    kind = feature["_type"]
    if kind == "Image":
        return {"dtype": "image"}
    if kind == "Sequence":
        return {"sequence": _card_feature(feature["feature"]).get("dtype", "image")}
    return {"dtype": feature["dtype"]}
