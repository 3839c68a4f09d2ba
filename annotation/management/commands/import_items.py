"""python manage.py import_items <project-slug> <manifest.jsonl> [--images-root DIR]"""
import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotation.assignment import work_units_open
from annotation.image_sources import SourcePolicy
from annotation.importing import manifest_import
from annotation.models import Project


class _CountingReader:
    """Yields the manifest's lines and tells the progress bar how many bytes went by."""

    def __init__(self, handle, bar):
        self.handle, self.bar = handle, bar

    def __iter__(self):
        for line in self.handle:
            self.bar.update(len(line))
            yield line


class Command(BaseCommand):
    help = "Import prompts and images from a JSONL manifest into a project."

    def add_arguments(self, parser):
        parser.add_argument("project_slug")
        parser.add_argument("manifest", type=Path)
        parser.add_argument("--images-root", type=Path, default=None,
                            help="Folder that relative image paths resolve under; no path may leave it. "
                                 "Default: the manifest's folder, with absolute paths read as given.")
        parser.add_argument("--max-pairs-per-prompt", type=int, default=None,
                            help="Create at most this many comparisons per prompt (default: all pairs).")
        parser.add_argument("--no-progress", action="store_true", help="Do not draw a progress bar.")

    def handle(self, *args, project_slug, manifest, images_root, max_pairs_per_prompt, no_progress, **options):
        project = Project.objects.filter(slug=project_slug).first()
        if project is None:
            known = ", ".join(Project.objects.values_list("slug", flat=True)[:20]) or "none yet"
            raise CommandError(f"Unknown project {project_slug!r} (projects: {known}).")
        if not manifest.is_file():
            raise CommandError(f"Manifest not found: {manifest}")
        if images_root is not None and not images_root.is_dir():
            raise CommandError(f"--images-root is not a folder: {images_root}")
        if max_pairs_per_prompt is not None and max_pairs_per_prompt < 1:
            raise CommandError("--max-pairs-per-prompt must be at least 1.")
        policy = SourcePolicy.from_settings(images_root=images_root or manifest.resolve().parent,
                                            absolute_paths_anywhere=images_root is None)
        with open(manifest, "rb") as handle, tqdm(total=os.path.getsize(manifest), unit="B", unit_scale=True,
                                                  desc="import", disable=no_progress, file=self.stderr) as bar:
            summary = manifest_import(project=project, lines=_CountingReader(handle, bar), policy=policy,
                                      max_pairs_per_prompt=max_pairs_per_prompt)
        opened = work_units_open(project=project)
        self.stdout.write(
            f"{summary.lines} lines: {summary.images_created} images imported, {summary.duplicates} duplicates, "
            f"{summary.rejected} rejected; {summary.prompts_created} new prompts, "
            f"{summary.comparisons_created} new comparisons; {opened} work units opened."
        )
        for error in summary.errors:
            self.stdout.write(f"  rejected {error}")
