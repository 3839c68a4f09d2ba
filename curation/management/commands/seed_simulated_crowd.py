"""python manage.py seed_simulated_crowd --images-dir DIR [--researcher NAME] [--admin NAME] | --check

The demo's simulated-crowd project (curation.demo_crowd): judgments, a default filter run and an
export, made at once; `--check` only verifies that the run and the export are there."""
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from curation.demo_crowd import DemoSeedError, SeededCrowd, simulated_crowd_results, simulated_crowd_seed


class Command(BaseCommand):
    help = ("Seed the demo's 'Simulated crowd (demo data)' project: simulated annotators' judgments, the default "
            "filter run and a Pick-a-Pic export, all written before this returns (as `make demo` does).")

    def add_arguments(self, parser):
        parser.add_argument("--images-dir", help="The folder holding the demo's manifest.jsonl and images "
                                                 "(annotation.demo_art draws it).")
        parser.add_argument("--researcher", default="researcher", help="Who creates the project, run and export.")
        parser.add_argument("--admin", default="", help="A user made admin of the project (optional).")
        parser.add_argument("--check", action="store_true",
                            help="Seed nothing: exit non-zero unless the run and the export are there.")

    def handle(self, *args, images_dir, researcher, admin, check, **options):
        try:
            if check:
                seeded = simulated_crowd_results()
            else:
                if not images_dir:
                    raise CommandError("--images-dir is required to seed (the folder of the demo's manifest.jsonl).")
                seeded = simulated_crowd_seed(researcher=_user(researcher), admin=_user(admin) if admin else None,
                                              images_dir=Path(images_dir))
        except DemoSeedError as exc:
            raise CommandError(str(exc)) from exc
        if options["verbosity"] >= 1:
            self.stdout.write(("Seeded results checked. " if check else "") + describe(seeded))


def describe(seeded: SeededCrowd) -> str:
    run, export = seeded.run, seeded.export
    summary = run.summary
    kept, raters = seeded.raters_kept
    return (f"Simulated crowd: project {seeded.project.slug!r}, {summary.get('judgments', 0)} judgments; filter run "
            f"{run.name} v{run.version} kept {summary.get('kept', 0)} of {summary.get('units', 0)} units and "
            f"{kept} of {raters} raters; {export.format} export "
            f"#{export.pk} ({export.rows_done} rows) in {export.destination}.")


def _user(username: str):
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"No user {username!r}: create it first (the demo command does).")
    return user
