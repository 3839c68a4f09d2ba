"""Dataset export from PostgreSQL: 1,000,000 Pick-a-Pic consensus pairs to Parquet with image
references (target <= 15 s), and pairs with embedded 512x512 JPEG bytes (target >= 5,000
rows/s); peak memory of the exporting process <= 1 GB in both.

Seeding runs in this process; each export runs in a fresh child process, so its peak RSS is
the export's own. Images are read from local storage with a warm page cache (2,000 distinct
JPEG files behind all image rows).
"""
import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import peak_rss_mb, report, setup_django

HERE = Path(__file__).resolve().parent


def seed_pairs(*, slug: str, pairs: int, distinct_images: int = 0, media_root: Path | None = None) -> int:
    """A project of `pairs` comparisons with one human judgment each and a succeeded filter run
    keeping them all; returns the run id. With `distinct_images`, image rows point at that many
    real 512x512 JPEG files, written under `media_root`."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from curation.models import FilterRun
    from curation.rules import FilterRules
    from seed import project_with_comparisons

    project = project_with_comparisons(slug=slug, comparisons=pairs)
    rater = get_user_model().objects.create_user(f"{slug}-rater")
    run = FilterRun.objects.create(project=project, name="bench", version=1, rules=FilterRules().as_json(),
                                   status=FilterRun.Status.SUCCEEDED, summary={"kept": pairs, "dropped": 0})
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO annotation_preferencejudgment (project_id, source, annotator_id, machine_version, rationale, "
            "is_gold, excluded_reason, created_at, comparison_id, aspect, choice, left_image_id) "
            "SELECT c.project_id, 'human', %s, '', '', false, '', now(), c.id, 'overall', "
            "CASE WHEN c.id %% 2 = 0 THEN 'a' ELSE 'b' END, c.image_a_id FROM annotation_comparison c "
            "WHERE c.project_id = %s", [rater.id, project.id])
        cursor.execute(
            "INSERT INTO curation_unitverdict (run_id, comparison_id, keep, consensus, confidence, reasons) "
            "SELECT %s, c.id, true, CASE WHEN c.id %% 2 = 0 THEN 'a' ELSE 'b' END, 0.9, '[]' "
            "FROM annotation_comparison c WHERE c.project_id = %s ORDER BY c.id", [run.id, project.id])
        if distinct_images:
            # Files in prompt order, so a prompt's 4 images are 4 different files whatever order the
            # image rows were inserted in (ids alone can put two of a prompt's images on one file).
            cursor.execute("UPDATE annotation_image i SET storage_key = 'bench/' || (x.n %% %s) || '.jpg' "
                           "FROM (SELECT id, row_number() OVER (ORDER BY prompt_id, id) - 1 AS n "
                           "FROM annotation_image WHERE project_id = %s) x WHERE x.id = i.id",
                           [distinct_images, project.id])
        cursor.execute("ANALYZE")
    if distinct_images:
        _write_jpegs(media_root / "bench", distinct_images)
    return run.id


def _write_jpegs(folder: Path, count: int) -> None:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:512, 0:512]
    for i in range(count):
        base = (np.sin(x / (20 + i % 17)) + np.cos(y / (25 + i % 13))) * 60 + 128
        noise = rng.normal(0, 6, (512, 512, 3))  # about 45 KB a JPEG, like a 512 px SD image at quality 85
        pixels = np.clip(base[..., None] + noise + [i % 50, 0, -(i % 50)], 0, 255).astype(np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, format="JPEG", quality=85)
        (folder / f"{i}.jpg").write_bytes(out.getvalue())


def build(export_id: int) -> None:
    """Child process: build one export and print its figures."""
    from curation.exports.services import dataset_export_build

    started = time.perf_counter()
    export = dataset_export_build(export_id=export_id)
    seconds = time.perf_counter() - started
    assert export.status == "succeeded", export.message
    rows = sum(n for splits in export.manifest["rows"].values() for n in splits.values())
    size = sum(f["bytes"] for f in export.manifest["files"])
    mode = export.options["images"]
    context = {"rows": rows, "files": len(export.manifest["files"]), "bytes": size, "container": export.container,
               "format": export.format, "images": mode, "database": "postgresql"}
    if mode == "reference":
        report("export_parquet_references_seconds", seconds, "s", target="<= 15", **context)
    else:
        report("export_parquet_embedded_rows_per_s", rows / seconds, "rows/s", target=">= 5000",
               seconds=round(seconds, 2), **context)
    report(f"export_parquet_{mode}_peak_rss_mb", peak_rss_mb(), "MB", target="<= 1024", **context)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--embedded-pairs", type=int, default=30_000)
    parser.add_argument("--only", choices=["refs", "embedded"], default=None, help="Run one of the two exports.")
    parser.add_argument("--build", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build is not None:
        setup_django(fresh_database=False)
        build(args.build)
        return
    media = Path(tempfile.mkdtemp(prefix="prefstudio-export-bench-"))
    os.environ["DJANGO_MEDIA_ROOT"] = str(media / "media")
    setup_django(fresh_database=True)
    from annotation.models import Project
    from curation.exports.services import dataset_export_create
    from curation.models import FilterRun

    try:
        runs = []
        if args.only in (None, "refs"):
            runs.append(("refs", seed_pairs(slug="refs", pairs=args.pairs), {"images": "reference"}))
        if args.only in (None, "embedded"):
            runs.append(("embedded", seed_pairs(slug="embedded", pairs=args.embedded_pairs, distinct_images=2_000,
                                                media_root=media / "media"), {"images": "embed"}))
        for slug, run_id, options in runs:
            export = dataset_export_create(project=Project.objects.get(slug=slug), format="pickapic",
                                           filter_run=FilterRun.objects.get(pk=run_id), options=options,
                                           destination=str(media / "out" / slug), anywhere=True, enqueue=False)
            subprocess.run([sys.executable, str(HERE / "export_bench.py"), "--build", str(export.pk)], cwd=HERE,
                           check=True, env=os.environ)
            shutil.rmtree(media / "out" / slug, ignore_errors=True)
    finally:
        shutil.rmtree(media, ignore_errors=True)


if __name__ == "__main__":
    main()
