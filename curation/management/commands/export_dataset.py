"""python manage.py export_dataset <project-slug> --format <name> --out <dir or s3://...>
[--filter-run ID] [--container parquet|jsonl|webdataset] [--option key=value ...]"""
import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotation.models import Project
from curation.exports.options import CONTAINERS, FORMATS
from curation.exports.services import dataset_export_build, dataset_export_create, validation_text
from curation.models import DatasetExport, FilterRun


def _option(text: str) -> tuple[str, object]:
    """key=value, the value read as JSON where it parses (numbers, true, null, lists), else as text."""
    if "=" not in text:
        raise CommandError(f"--option {text!r}: expected key=value")
    key, value = text.split("=", 1)
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


class Command(BaseCommand):
    help = "Export a project's judgments as a dataset (with a dataset card and manifest) to a folder or S3."

    def add_arguments(self, parser):
        parser.add_argument("project_slug")
        parser.add_argument("--format", required=True, help=f"One of: {', '.join(FORMATS)}.")
        parser.add_argument("--out", required=True, help="A new local folder, or s3://bucket/prefix.")
        parser.add_argument("--filter-run", type=int, default=None, help="Id of the filter run whose verdicts to use.")
        parser.add_argument("--container", default="parquet", help=f"One of: {', '.join(CONTAINERS)}.")
        parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                            help="A format option (see the README), e.g. images=reference or unseen_people=0.2.")
        parser.add_argument("--no-progress", action="store_true", help="Do not draw a progress bar.")

    def handle(self, *args, project_slug, format, out, filter_run, container, option, no_progress, **kwargs):
        project = Project.objects.filter(slug=project_slug).first()
        if project is None:
            known = ", ".join(Project.objects.values_list("slug", flat=True)[:20]) or "none yet"
            raise CommandError(f"Unknown project {project_slug!r} (projects: {known}).")
        run = None
        if filter_run is not None:
            run = FilterRun.objects.filter(pk=filter_run, project=project).first()
            if run is None:
                raise CommandError(f"No filter run {filter_run} in project {project_slug!r}.")
        try:
            export = dataset_export_create(project=project, format=format, container=container, destination=out,
                                           filter_run=run, options=dict(_option(o) for o in option), anywhere=True,
                                           enqueue=False)
        except ValidationError as exc:
            raise CommandError(validation_text(exc)) from exc
        with tqdm(total=0, unit="rows", desc=f"export {format}", disable=no_progress, file=self.stderr) as bar:
            def on_total(total):
                bar.total = total
                bar.refresh()

            export = dataset_export_build(export_id=export.pk, on_total=on_total, on_rows=bar.update)
        if export.status != DatasetExport.Status.SUCCEEDED:
            raise CommandError(f"export {export.pk} {export.status}: {export.message}")
        rows = ", ".join(f"{config}/{split}: {n}" for config, splits in export.manifest["rows"].items()
                         for split, n in splits.items())
        self.stdout.write(f"export {export.pk} written to {export.destination} ({rows}; "
                          f"{len(export.manifest['files'])} files listed in manifest.json)")
