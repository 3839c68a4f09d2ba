"""python manage.py seed_catalogue: a machine annotator from every catalogue entry the database lacks."""
import os

from django.core.management.base import BaseCommand

from annotation.models import MachineAnnotator
from mlworkers import catalogue, services


class Command(BaseCommand):
    help = ("Create a machine annotator from every catalogue entry (mlworkers.catalogue) that has none of its "
            "name yet, as `make demo` does.")

    def handle(self, *args, **options):
        """Each annotator asks the Hub for its references' commits (mlworkers.hub.HUB_TIMEOUT_S at
        most each). Once the Hub proves unreachable the rest are saved without asking it (under
        HF_HUB_OFFLINE, in this process and only while seeding): their jobs resolve the commits when
        they start, or fail at once with "model hub unreachable: ..."."""
        have = set(MachineAnnotator.objects.values_list("name", flat=True))
        missing = [entry for entry in catalogue.ENTRIES.values() if entry.label not in have]
        unresolved: list[str] = []
        offline_before = os.environ.get("HF_HUB_OFFLINE")
        try:
            for entry in missing:
                annotator = catalogue.machine_annotator_create_from_catalogue(key=entry.key)
                unresolved += services.machine_annotator_unresolved(annotator)
                if unresolved:
                    os.environ["HF_HUB_OFFLINE"] = "1"
        finally:
            if offline_before is None:
                os.environ.pop("HF_HUB_OFFLINE", None)
            else:
                os.environ["HF_HUB_OFFLINE"] = offline_before
        if missing and options["verbosity"] >= 1:
            self.stdout.write(f"Added {len(missing)} machine annotators from the catalogue"
                              + (": the model hub was not reached, their commits are resolved when a job starts."
                                 if unresolved else "."))
