"""Dataset exports: create one (checked request, queued after commit), cancel one, and build one
(the Celery task and `manage.py export_dataset` call `dataset_export_build`).

A build streams: pages of rows from the database become record batches, image bytes are read a
row group at a time, and each finished shard goes to the destination, so memory does not grow
with the project. A failure or cancel removes what was written; nothing is published without
its manifest.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from curation.exports.card import card_bytes, manifest_build, manifest_bytes
from curation.exports.containers import WRITERS
from curation.exports.destinations import destination_open, file_sha256, os_error_text
from curation.exports.errors import ExportCancelled, ExportError
from curation.exports.images import ImageSource
from curation.exports.options import CONTAINERS, FORMATS, ExportOptions, destination_parse
from curation.exports.pairs import pickapic_tables, trl_tables
from curation.exports.per_image import pamela_tables, visionprefer_tables
from curation.exports.tables import assemble
from curation.models import DatasetExport, FilterRun

FORMAT_TABLES = {"pickapic": pickapic_tables, "visionprefer": visionprefer_tables, "pamela": pamela_tables,
                 "trl": trl_tables}


@transaction.atomic
def dataset_export_create(*, project, format: str, container: str = "parquet", destination: str = "",
                          filter_run: FilterRun | None = None, options: dict | None = None, created_by=None,
                          anywhere: bool = False, enqueue: bool = True) -> DatasetExport:
    """Record an export and queue its build after commit. Local destinations must lie under
    EXPORT_ROOT unless `anywhere` (the operator's command line); a blank one gets a fresh folder
    there. Raises ValidationError naming the field that is wrong."""
    if format not in FORMATS:
        raise ValidationError({"format": f"unknown format {format!r}; known: {', '.join(FORMATS)}"})
    if container not in CONTAINERS:
        raise ValidationError({"container": f"unknown container {container!r}; known: {', '.join(CONTAINERS)}"})
    checked = ExportOptions.from_json(options, export_format=format)
    _check_inputs(project, format, checked, filter_run)
    export = DatasetExport.objects.create(project=project, format=format, container=container, destination="",
                                          filter_run=filter_run, options=checked.as_json(), created_by=created_by)
    export.destination = _destination_for(export, destination, anywhere=anywhere)
    export.save(update_fields=["destination"])
    if enqueue:
        from curation.tasks import dataset_export_build_task

        transaction.on_commit(lambda: dataset_export_build_task.delay(export.pk))
    return export


def _check_inputs(project, format: str, options: ExportOptions, filter_run: FilterRun | None) -> None:
    """What the format needs of the project and filter run; checked when the export is asked for
    and again when it is built (the project's aspects or annotators may have changed between)."""
    from annotation.models import MachineAnnotator

    if filter_run is not None:
        if filter_run.project_id != project.pk:
            raise ValidationError({"filter_run": f"filter run {filter_run.pk} belongs to another project"})
        if filter_run.status != FilterRun.Status.SUCCEEDED:
            raise ValidationError({"filter_run": f"filter run {filter_run.pk} has not succeeded "
                                                 f"(it is {filter_run.status})"})
    if format == "trl" and filter_run is None:
        raise ValidationError({"filter_run": "trl rows are a filter run's consensus pairs: name a filter run"})
    if format == "pickapic" and options.rows == "consensus" and filter_run is None:
        raise ValidationError({"filter_run": "pickapic consensus rows need a filter run (or options.rows = "
                                             "judgments for one row per human judgment)"})
    known = ["overall", *project.aspect_keys]
    if format == "pickapic" and options.aspect not in known:
        raise ValidationError({"options": f"aspect: {options.aspect!r} is not an aspect of this project "
                                          f"({', '.join(known)})"})
    if format == "visionprefer":
        unknown = [a for a in options.aspects or [] if a not in project.aspect_keys]
        if unknown:
            raise ValidationError({"options": f"aspects: {', '.join(unknown)} not among the project's aspects "
                                              f"({', '.join(project.aspect_keys)})"})
        if options.source != "human" and not MachineAnnotator.objects.filter(name=options.source).exists():
            raise ValidationError({"options": f"source: no machine annotator named {options.source!r} "
                                              f"(use human or a machine annotator's name)"})


def _destination_for(export: DatasetExport, raw: str, *, anywhere: bool) -> str:
    root = Path(settings.EXPORT_ROOT).resolve()
    if not (raw or "").strip():
        return str(root / export.project.slug / f"{export.pk:06d}-{export.format}-{export.container}")
    destination = destination_parse(raw)
    if destination.is_s3 or anywhere:
        return destination.raw
    path = Path(destination.path)
    path = (path if path.is_absolute() else root / path).resolve()
    if path != root and root not in path.parents:
        raise ValidationError({"destination": f"local destinations must lie under the export folder {root} "
                                              f"(got {raw}); or use s3://bucket/prefix"})
    return str(path)


@transaction.atomic
def dataset_export_cancel(*, export: DatasetExport) -> DatasetExport:
    """A pending export is cancelled at once; a running one stops at its next batch and removes
    what it wrote."""
    export = DatasetExport.objects.select_for_update().get(pk=export.pk)
    if export.status == DatasetExport.Status.PENDING:
        export.status, export.finished_at = DatasetExport.Status.CANCELLED, timezone.now()
        export.message = "cancelled before it started"
    elif export.status == DatasetExport.Status.RUNNING:
        export.status = DatasetExport.Status.CANCELLING
    else:
        raise ValidationError({"status": f"export {export.pk} is {export.status}; only a pending or running export "
                                         f"can be cancelled"})
    export.save(update_fields=["status", "finished_at", "message"])
    return export


# Longer than any pause between two progress writes (a row group of images read from S3 included).
ORPHANED_AFTER = timedelta(minutes=10)

_WHAT = {"pickapic": "human pairwise judgments on this aspect", "trl": "decided pairs",
         "visionprefer": "aspect scores from this source", "pamela": "personal ratings"}


class _Progress:
    """Writes the rows done at most twice a second and notices a cancel there."""

    def __init__(self, export: DatasetExport, on_rows=None):
        self.export_id, self.done, self.last, self.on_rows = export.pk, 0, 0.0, on_rows

    def advance(self, rows: int) -> None:
        self.done += rows
        if self.on_rows:
            self.on_rows(rows)
        now = time.monotonic()
        if now - self.last < 0.5:
            return
        self.last = now
        DatasetExport.objects.filter(pk=self.export_id).update(rows_done=self.done, heartbeat_at=timezone.now())
        status = DatasetExport.objects.filter(pk=self.export_id).values_list("status", flat=True).first()
        if status == DatasetExport.Status.CANCELLING:
            raise ExportCancelled()


def dataset_export_build(*, export_id: int, on_total=None, on_rows=None) -> DatasetExport:
    """Write the export. Safe to call twice: only a pending export, or a running one whose build
    has been silent for ORPHANED_AFTER, is built. `on_total` and `on_rows` let a command line
    show progress."""
    now = timezone.now()
    # A pending export, or a running one whose build went silent: its worker died, and the broker
    # delivered the task again (tasks are acknowledged late). Writing restarts from nothing.
    orphaned = Q(status=DatasetExport.Status.RUNNING, heartbeat_at__lt=now - ORPHANED_AFTER)
    claimed = DatasetExport.objects.filter(Q(status=DatasetExport.Status.PENDING) | orphaned, pk=export_id).update(
        status=DatasetExport.Status.RUNNING, started_at=now, heartbeat_at=now, message="", rows_done=0)
    export = DatasetExport.objects.select_related("project", "filter_run").get(pk=export_id)
    if not claimed:
        return export
    destination = destination_open(destination_parse(export.destination), export.pk)
    progress = _Progress(export, on_rows)
    try:
        destination.check()
        manifest = _write(export, destination, progress, on_total)
        destination.publish()
    except ExportCancelled:
        destination.abort()
        return _finish(export, DatasetExport.Status.CANCELLED, progress,
                       f"cancelled after {progress.done} rows; nothing was published")
    except ValidationError as exc:
        destination.abort()
        return _finish(export, DatasetExport.Status.FAILED, progress, validation_text(exc))
    except ExportError as exc:
        destination.abort()
        return _finish(export, DatasetExport.Status.FAILED, progress, str(exc))
    except OSError as exc:
        destination.abort()
        return _finish(export, DatasetExport.Status.FAILED, progress, os_error_text(exc, "the export"))
    except Exception as exc:
        destination.abort()
        _finish(export, DatasetExport.Status.FAILED, progress, f"{exc.__class__.__name__}: {exc}")
        raise
    return _finish(export, DatasetExport.Status.SUCCEEDED, progress, "", manifest=manifest)


def validation_text(exc: ValidationError) -> str:
    if hasattr(exc, "message_dict"):
        return "; ".join(f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items())
    return " ".join(exc.messages)


def _finish(export, status, progress, message, *, manifest=None) -> DatasetExport:
    fields = {"status": status, "message": message[:2000], "rows_done": progress.done, "finished_at": timezone.now()}
    if manifest is not None:
        fields["manifest"] = manifest
    DatasetExport.objects.filter(pk=export.pk).update(**fields)
    export.refresh_from_db()
    return export


def _write(export: DatasetExport, destination, progress: _Progress, on_total) -> dict:
    options = ExportOptions.from_json(export.options, export_format=export.format)
    _check_inputs(export.project, export.format, options, export.filter_run)
    tables = FORMAT_TABLES[export.format](project=export.project, run=export.filter_run, options=options)
    total = sum(t.count for t in tables)
    DatasetExport.objects.filter(pk=export.pk).update(rows_total=total)
    if on_total:
        on_total(total)
    root = destination.root
    files: list[dict] = []
    rows: dict[str, dict[str, int]] = {}
    schemas = {}
    source = ImageSource(max_side=options.image_max_side)

    # A finished file is hashed (and uploaded, for S3) on a second thread while the next one is
    # written: sha256 and uploads release the GIL, so the two cores both work.
    pending = []

    def finish(relative, entry):
        path = root / relative
        entry.update(sha256=file_sha256(path), bytes=path.stat().st_size)
        destination.file_done(relative)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="export-finish") as finisher:
        def done(relative: str, *, rows=None, config=None, split=None):
            entry = {"path": relative, "rows": rows, **({"config": config, "split": split} if config else {})}
            files.append(entry)
            pending.append(finisher.submit(finish, relative, entry))
            while len(pending) > 4:  # the writer stays at most a few files ahead of the finisher
                pending.pop(0).result()

        try:
            _write_tables(export, tables, options, root, schemas, rows, source, progress, done)
            while pending:
                pending.pop(0).result()
        finally:
            for future in pending:  # on failure: stop what has not started before the caller cleans up
                future.cancel()

    if not progress.done:
        raise ExportError(f"nothing to export: the project has no {_WHAT[export.format]}"
                          f"{' that the filter run kept' if export.filter_run_id else ''}")
    card = root / "README.md"
    card.write_bytes(card_bytes(export=export, tables=tables, schemas=schemas, rows=rows, files=files))
    files.append({"path": "README.md", "rows": None, "sha256": file_sha256(card), "bytes": card.stat().st_size})
    manifest = manifest_build(export=export, tables=tables, files=files, rows=rows)
    (root / "manifest.json").write_bytes(manifest_bytes(manifest))
    return manifest


def _write_tables(export, tables, options, root, schemas, rows, source, progress, done) -> None:
    for table in tables:
        schema = schemas[(table.config, table.split)] = table.schema(embed=options.embed)
        writer = WRITERS[export.container](
            root=root, table=table, schema=schema, shard_rows=options.shard_rows, group_rows=options.group_rows,
            on_file=done)
        written = 0
        step = options.group_rows if options.embed else None
        for batch in table.batches():
            for piece in _slices(batch, step):
                writer.write(assemble(table, piece, schema=schema, source=source))
                count = len(next(iter(piece.values()))) if piece else 0
                written += count
                progress.advance(count)
        writer.close()
        rows.setdefault(table.config, {})[table.split] = written


def _slices(batch: dict, size: int | None):
    n = len(next(iter(batch.values()))) if batch else 0
    if not size or n <= size:
        yield batch
        return
    for start in range(0, n, size):
        yield {name: values[start:start + size] for name, values in batch.items()}
