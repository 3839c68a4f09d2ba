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
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q

from annotation.models import AspectScore, Comparison, Image, PersonalRating, PreferenceJudgment, Prompt
from core.audit import audit_record
from core.jobs import JobCancelled, JobLease, JobLost, job_cancel, job_claim
from core.models import AuditAction
from core.statistics import statistics_refresh_if_stale
from curation.exports.card import card_bytes, manifest_build, manifest_bytes
from curation.exports.containers import WRITERS
from curation.exports.destinations import (
    destination_check_free,
    destination_key,
    destination_open,
    file_sha256,
    os_error_text,
)
from curation.exports.errors import ExportError
from curation.exports.images import ImageSource
from curation.exports.options import CONTAINERS, FORMATS, ExportOptions, destination_parse
from curation.exports.pairs import pickapic_tables, trl_tables
from curation.exports.per_image import pamela_tables, visionprefer_tables
from curation.exports.tables import assemble
from curation.models import DatasetExport, FilterRun, UnitVerdict

# What a build reads in bulk: their statistics are refreshed first where many rows changed.
_READ_MODELS = (PreferenceJudgment, AspectScore, PersonalRating, Comparison, Image, Prompt, UnitVerdict)

FORMAT_TABLES = {"pickapic": pickapic_tables, "visionprefer": visionprefer_tables, "pamela": pamela_tables,
                 "trl": trl_tables}


def dataset_export_create(*, project, format: str, container: str = "parquet", destination: str = "",
                          filter_run: FilterRun | None = None, options: dict | None = None, created_by=None,
                          anywhere: bool = False, enqueue: bool = True) -> DatasetExport:
    """Record an export, claiming its destination, and queue its build after commit.

    Local destinations must lie in the project's folder under EXPORT_ROOT unless `anywhere` (the
    operator's command line); a blank one gets a fresh folder there. A destination that holds
    files, or that another export has claimed, is refused. Raises ValidationError naming the
    field that is wrong."""
    if format not in FORMATS:
        raise ValidationError({"format": f"unknown format {format!r}; known: {', '.join(FORMATS)}"})
    if container not in CONTAINERS:
        raise ValidationError({"container": f"unknown container {container!r}; known: {', '.join(CONTAINERS)}"})
    checked = ExportOptions.from_json(options, export_format=format)
    _check_inputs(project, format, checked, filter_run)
    wanted = _destination_for(project, destination, anywhere=anywhere) if (destination or "").strip() else None
    if wanted is not None and destination_parse(wanted).is_s3:
        destination_check_free(destination_parse(wanted))  # a network listing: before the transaction
    with transaction.atomic():
        export = DatasetExport.objects.create(project=project, format=format, container=container, destination="",
                                              filter_run=filter_run, options=checked.as_json(), created_by=created_by)
        audit_record(actor=created_by, action=AuditAction.JOB_STARTED, project=project, target=f"export {export.pk}")
        candidates = [wanted] if wanted is not None else _default_destinations(export)
        for index, candidate in enumerate(candidates):
            if _claim(export, candidate, last=index == len(candidates) - 1):
                break
        if enqueue:
            from curation.tasks import dataset_export_build_task

            transaction.on_commit(lambda: dataset_export_build_task.delay(export.pk))
    return export


def _claim(export: DatasetExport, destination: str, *, last: bool) -> bool:
    """Point `export` at `destination` if no other live export holds it and it holds no files (an
    S3 prefix was checked before the transaction). Returns False for a taken default candidate
    (the next is tried); raises on the last one."""
    parsed = destination_parse(destination)
    key = destination_key(parsed)
    holder = _live_claims(key).exclude(pk=export.pk).values_list("pk", "destination").first()
    try:
        if holder is not None:
            where = "is claimed by" if destination_key(destination_parse(holder[1])) == key else "overlaps"
            raise ValidationError({"destination": f"{destination} {where} export {holder[0]} ({holder[1]}); choose "
                                                  f"another destination (one export publishes to one place)"})
        if not parsed.is_s3:
            destination_check_free(parsed)
        with transaction.atomic():  # a concurrent claim of the same place fails here, on the unique key
            DatasetExport.objects.filter(pk=export.pk).update(destination=destination, destination_key=key)
    except IntegrityError:
        if not last:
            return False
        raise ValidationError({"destination": f"{destination} was just claimed by another export; choose another "
                                              f"destination"}) from None
    except ValidationError:
        if not last:
            return False
        raise
    export.destination, export.destination_key = destination, key
    return True


def _live_claims(key: str):
    """Exports (not failed or cancelled) whose destination is `key`, lies inside it, or holds it:
    a dataset inside another's folder or prefix would be read as part of it."""
    if key.startswith("s3://"):
        bucket, _, prefix = key[len("s3://"):].partition("/")
        nested_in = [f"s3://{bucket}/{p}".removesuffix(".") for p in PurePosixPath(prefix).parents]
    else:
        nested_in = [str(p) for p in Path(key).parents]
    inside = key.rstrip("/") + "/"
    return (DatasetExport.objects.exclude(status__in=(DatasetExport.Status.FAILED, DatasetExport.Status.CANCELLED))
            .filter(Q(destination_key=key) | Q(destination_key__startswith=inside) | Q(destination_key__in=nested_in))
            .exclude(destination_key=""))


def _default_destinations(export: DatasetExport) -> list[str]:
    base = Path(settings.EXPORT_ROOT).resolve() / export.project.slug
    name = f"{export.pk:06d}-{export.format}-{export.container}"
    return [str(base / name), *(str(base / f"{name}-{n}") for n in range(2, 6))]


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


def _destination_for(project, raw: str, *, anywhere: bool) -> str:
    """The destination asked for, made absolute: a local folder must lie in the project's own
    folder under EXPORT_ROOT (relative paths are taken from there) unless `anywhere`."""
    destination = destination_parse(raw)
    if destination.is_s3:
        return f"s3://{destination.bucket}/{destination.prefix}" if destination.prefix else f"s3://{destination.bucket}"
    root = Path(settings.EXPORT_ROOT).resolve() / project.slug
    path = Path(destination.path).expanduser()
    if anywhere:
        return str(path.resolve())
    path = (path if path.is_absolute() else root / path).resolve()
    if root not in path.parents:
        raise ValidationError({"destination": f"local destinations must lie in this project's export folder {root} "
                                              f"(got {raw}); or use s3://bucket/prefix"})
    return str(path)


def dataset_export_cancel(*, export: DatasetExport, actor=None) -> DatasetExport:
    """A queued export, or one whose worker died, is cancelled at once (what a dead worker wrote is
    removed by the cleanup task); a running one stops at its next batch and removes what it wrote."""
    return job_cancel(job=export, actor=actor)


def dataset_export_cleanup(*, export_id: int) -> None:
    """Remove what an export that did not succeed left behind: its staging folders and, on S3,
    anything uploaded under its prefix (which was empty when it was claimed)."""
    export = DatasetExport.objects.filter(pk=export_id).first()
    if export is None or export.status not in (DatasetExport.Status.FAILED, DatasetExport.Status.CANCELLED):
        return
    # The claim was released when this export ended: another may have claimed the place since.
    reclaimed = _live_claims(export.destination_key).exists() if export.destination_key else False
    destination_open(destination_parse(export.destination), export.pk, attempt=export.attempts).discard(
        remote=not reclaimed)


_WHAT = {"pickapic": "human pairwise judgments on this aspect", "trl": "decided pairs",
         "visionprefer": "aspect scores from this source", "pamela": "personal ratings"}


class _Progress:
    """Writes the rows done (and the heartbeat) at most twice a second, and notices a cancel there."""

    def __init__(self, lease: JobLease, on_rows=None):
        self.lease, self.done, self.last, self.on_rows = lease, 0, 0.0, on_rows

    def advance(self, rows: int) -> None:
        self.done += rows
        if self.on_rows:
            self.on_rows(rows)
        now = time.monotonic()
        if now - self.last < 0.5:
            return
        self.last = now
        self.lease.beat(rows_done=self.done)


def dataset_export_build(*, export_id: int, on_total=None, on_rows=None) -> DatasetExport:
    """Write the export. Safe to deliver twice: only a queued export, or a running one whose
    worker died (writing restarts from nothing, in a staging folder of its own), is built.
    `on_total` and `on_rows` let a command line show progress."""
    lease = job_claim(DatasetExport, export_id)
    export = DatasetExport.objects.select_related("project", "filter_run").get(pk=export_id)
    if lease is None:
        return export
    destination = destination_open(destination_parse(export.destination), export.pk, attempt=lease.attempt)
    progress = _Progress(lease, on_rows)
    with lease.running():
        try:
            published = destination.published_manifest() if lease.attempt > 1 else None
            if published is not None:  # an earlier attempt published, then its worker died
                lease.succeed("published by an earlier attempt", manifest=published,
                              rows_done=sum(f.get("rows") or 0 for f in published.get("files", [])))
                return _refreshed(export)
            lease.beat(rows_done=0)
            destination.check()
            manifest = _write(export, destination, progress, on_total)
            lease.beat(rows_done=progress.done)  # the last chance to cancel: after this it is published
            destination.publish()
        except JobCancelled:
            destination.abort()
            lease.cancelled(f"cancelled after {progress.done} rows; nothing was published", rows_done=progress.done)
            return _refreshed(export)
        except JobLost:
            destination.abort(remote=False)  # the files under the destination are the new attempt's now
            raise
        except (ValidationError, ExportError, OSError) as exc:  # final: the owner must change something
            destination.abort()
            lease.fail(_failure_text(exc), rows_done=progress.done)
            return _refreshed(export)
        except BaseException:
            destination.abort()
            raise
        lease.succeed(" ".join(manifest["notes"]), manifest=manifest, rows_done=progress.done)
    return _refreshed(export)


def _failure_text(exc: ValidationError | ExportError | OSError) -> str:
    if isinstance(exc, ValidationError):
        return validation_text(exc)
    if isinstance(exc, OSError):
        return os_error_text(exc, "the export")
    return str(exc)


def validation_text(exc: ValidationError) -> str:
    if hasattr(exc, "message_dict"):
        return "; ".join(f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items())
    return " ".join(exc.messages)


def _refreshed(export: DatasetExport) -> DatasetExport:
    export.refresh_from_db()
    return export


def _write(export: DatasetExport, destination, progress: _Progress, on_total) -> dict:
    options = ExportOptions.from_json(export.options, export_format=export.format)
    _check_inputs(export.project, export.format, options, export.filter_run)
    statistics_refresh_if_stale(*_READ_MODELS)
    tables = FORMAT_TABLES[export.format](project=export.project, run=export.filter_run, options=options)
    total = sum(t.count for t in tables)
    progress.lease.beat(rows_total=total)
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
