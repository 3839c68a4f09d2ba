"""The demo's simulated crowd: a project whose pairwise judgments come from simulated annotators
of known behaviour (`curation.simulation`), stored through the same services as a person's key
presses (leases, submissions, unit counters), then a filter run with the default rules and a
Pick-a-Pic export, so `make demo` opens on a report and a dataset.

The truth each simulated rater is right or wrong about comes from the demo images' own meta
(`annotation.demo_art`): an image that shows what its prompt asks for beats one that does not,
a clean one beats one with an artifact; between two equally good images it is a matter of taste
(a hard unit). Every step does only what is missing, so seeding twice changes nothing.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

from django.contrib.auth import get_user_model

from annotation.assignment import MAX_LEASE_BATCH, assignments_lease_next, work_units_open
from annotation.image_sources import SourcePolicy
from annotation.importing import manifest_import
from annotation.judging import submissions_store
from annotation.models import Image, Membership, Project, TaskType, WorkUnit
from annotation.services import membership_set, project_create
from curation.exports.services import dataset_export_build, dataset_export_create
from curation.models import DatasetExport, FilterRun
from curation.selectors import filter_run_raters_kept
from curation.services import filter_run_create, filter_run_execute
from curation.simulation import CrowdComposition, rater_answer
from curation.stats.judgments import CHOICE_A, CHOICE_B, CHOICE_TIE

CROWD_SLUG = "simulated-crowd"
CROWD_NAME = "Simulated crowd (demo data)"
# Twelve raters, five per pair: careful and sloppy people, two random clickers (spammers) and
# two who always pick the left image; Dawid-Skene (the default consensus) gives the clickers no
# weight. Between two equally good images people still share some taste (hard_skill).
CROWD = CrowdComposition("demo", overlap=5, reliable=6, sloppy=2, random=2, always_left=2, hard_skill=0.6)
USERNAME_KIND = {"reliable": "careful", "sloppy": "sloppy", "random": "random-clicker", "always_left": "left-clicker",
                 "adversarial": "adversary"}
CROWD_INSTRUCTIONS = (
    "Demo data: every judgment in this project comes from simulated annotators, not people. "
    f"{CROWD.raters} accounts named sim-... (careful, sloppy, random clickers who answer at random, and left "
    f"clickers who always choose the left image; nobody can sign in as them) judged each pair "
    f"{CROWD.overlap} times through the same services as the workspace. The filter run 'default' (default "
    "rules) and a Pick-a-Pic export were made from them when the demo was set up. Their truth: an image that "
    "shows what the prompt asks for beats one that does not, and a clean one beats one with an artifact.")
RUN_NAME = "default"
EXPORT_FORMAT = "pickapic"


class DemoSeedError(Exception):
    """A step of the demo's seeding did not reach its result; the message says which and why."""


@dataclass(frozen=True)
class SeededCrowd:
    project: Project
    run: FilterRun
    export: DatasetExport

    @property
    def raters_kept(self) -> tuple[int, int]:
        """(raters the run kept, raters it judged)."""
        return filter_run_raters_kept(run=self.run)


def simulated_crowd_seed(*, researcher, admin=None, images_dir: Path, seed: int = 0) -> SeededCrowd:
    """Make sure the simulated-crowd project exists with the images of `images_dir/manifest.jsonl`
    (the demo's drawing), judged by the simulated crowd, with a succeeded default filter run and
    a succeeded Pick-a-Pic export of it (written synchronously, not on a worker). Raises
    DemoSeedError when a step fails."""
    project = _project(researcher, admin)
    _images(project, Path(images_dir))
    work_units_open(project=project)
    _judge_everything(project, _simulated_members(project), seed)
    run = _filter_run(project, researcher)
    export = _export(project, run, researcher)
    return SeededCrowd(project=project, run=run, export=export)


def simulated_crowd_results() -> SeededCrowd:
    """The seeded project's latest succeeded default run and its latest succeeded export, whose
    manifest is on disk; DemoSeedError naming what is missing."""
    project = Project.objects.filter(slug=CROWD_SLUG).first()
    if project is None:
        raise DemoSeedError(f"no project {CROWD_SLUG!r}: the simulated crowd was not seeded")
    run = _succeeded_run(project)
    if run is None:
        raise DemoSeedError(f"project {CROWD_SLUG!r} has no succeeded filter run named {RUN_NAME!r}")
    export = _succeeded_export(project, run)
    if export is None:
        raise DemoSeedError(f"filter run {run.name} v{run.version} of {CROWD_SLUG!r} has no succeeded "
                            f"{EXPORT_FORMAT} export whose manifest.json is on disk")
    return SeededCrowd(project=project, run=run, export=export)


# --- steps ----------------------------------------------------------------------------------

def _project(researcher, admin) -> Project:
    project = Project.objects.filter(slug=CROWD_SLUG).first()
    if project is None:
        project = project_create(creator=researcher, slug=CROWD_SLUG, name=CROWD_NAME, instructions=CROWD_INSTRUCTIONS,
                                 task_types=[TaskType.PAIRWISE.value], overlap=CROWD.overlap, gold_rate=0.0)
    if admin is not None:
        membership_set(project=project, user=admin, role=Membership.Role.ADMIN)
    return project


def _images(project: Project, images_dir: Path) -> None:
    manifest = images_dir / "manifest.jsonl"
    lines = sum(1 for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip())
    if Image.objects.filter(project=project).count() >= lines:
        return
    with open(manifest, "rb") as handle:  # lines already imported count as duplicates
        summary = manifest_import(project=project, lines=handle,
                                  policy=SourcePolicy.from_settings(images_root=images_dir))
    if summary.errors:
        raise DemoSeedError("importing the simulated crowd's images failed: "
                            + "; ".join(str(e) for e in summary.errors[:5]))


def _simulated_members(project: Project) -> list[tuple[Membership, str, float]]:
    """(membership, kind, skill) of each simulated annotator, created with an unusable password."""
    User = get_user_model()
    members = []
    numbers: dict[str, int] = {}
    skills = random.Random("demo-crowd-skills")
    for kind in CROWD.kinds:
        numbers[kind] = numbers.get(kind, 0) + 1
        username = f"sim-{USERNAME_KIND[kind]}-{numbers[kind]:02d}"
        user = User.objects.filter(username=username).first()
        if user is None:
            user = User(username=username, first_name="Simulated", last_name=USERNAME_KIND[kind])
            user.set_unusable_password()
            user.save()
        membership_set(project=project, user=user, role=Membership.Role.ANNOTATOR)
        membership = Membership.objects.select_related("project", "user").get(project=project, user=user)
        members.append((membership, kind, CROWD.skill(kind, skills)))
    return members


def _judge_everything(project: Project, members, seed: int) -> None:
    """Round after round, each simulated annotator (in a shuffled order) leases a batch and
    answers it, until nobody is handed anything: every unit then has its overlap."""
    pairs = {unit_id: (a, b) for unit_id, a, b in WorkUnit.objects.filter(
        project=project, task_type=TaskType.PAIRWISE, is_gold=False).values_list(
        "id", "comparison__image_a_id", "comparison__image_b_id")}
    appeal = {image_id: _appeal(meta or {}, sha256) for image_id, meta, sha256 in
              Image.objects.filter(project=project).values_list("id", "meta", "sha256")}
    order = random.Random(f"demo-crowd-order:{seed}")
    while True:
        handed_out = False
        for membership, kind, skill in order.sample(members, len(members)):
            leased = assignments_lease_next(membership=membership, task_type=TaskType.PAIRWISE, count=MAX_LEASE_BATCH)
            if not leased:
                continue
            handed_out = True
            items = [_answer(membership.user.username, kind, skill, a, pairs[a.unit_id], appeal, seed) for a in leased]
            refused = [o for o in submissions_store(membership=membership, items=items)
                       if o.status not in ("stored", "duplicate")]
            if refused:
                raise DemoSeedError(f"a simulated judgment of {membership.user.username} was refused: "
                                    f"{refused[0].message}")
        if not handed_out:
            return


def _appeal(meta: dict, sha256: str) -> float:
    """How good a demo image is: showing the prompt counts most, being clean next; the rest is
    taste, a fixed amount per image below either step."""
    taste = int(sha256[:8], 16) / 2**32 * 0.5
    return 2.0 * bool(meta.get("faithful")) + 1.0 * (not meta.get("artifact")) + taste


def _answer(username: str, kind: str, skill: float, assignment, pair: tuple[int, int], appeal: dict, seed: int) -> dict:
    image_a, image_b = pair
    truth = (CHOICE_A if appeal[image_a] > appeal[image_b] else
             CHOICE_B if appeal[image_b] > appeal[image_a] else CHOICE_TIE)
    hard = math.floor(appeal[image_a]) == math.floor(appeal[image_b])
    left = CHOICE_A if assignment.left_image_id == image_a else CHOICE_B
    rng = random.Random(f"{seed}:{username}:{assignment.unit_id}")
    choice = rater_answer(CROWD, kind, skill=skill, truth=truth, left=left, hard=hard, rng=rng)
    seconds = rng.lognormvariate(math.log(6.0), 0.4) / (8 if kind in ("random", "always_left") else 1)
    return {"idempotency_key": f"simulated-{seed}-{assignment.id}", "assignment": assignment.id,
            "choice": "tie" if choice == CHOICE_TIE else "left" if choice == left else "right",
            "latency_ms": int(seconds * 1000)}


def _succeeded_run(project: Project) -> FilterRun | None:
    return (FilterRun.objects.filter(project=project, name=RUN_NAME, status=FilterRun.Status.SUCCEEDED)
            .order_by("-version").first())


def _succeeded_export(project: Project, run: FilterRun) -> DatasetExport | None:
    for export in DatasetExport.objects.filter(project=project, filter_run=run, format=EXPORT_FORMAT,
                                               status=DatasetExport.Status.SUCCEEDED).order_by("-id"):
        if (Path(export.destination) / "manifest.json").is_file():
            return export
    return None


def _filter_run(project: Project, researcher) -> FilterRun:
    run = _succeeded_run(project)
    if run is not None:
        return run
    run = filter_run_create(project=project, name=RUN_NAME, rules={}, created_by=researcher, enqueue=False)
    run = filter_run_execute(run_id=run.pk)
    if run.status != FilterRun.Status.SUCCEEDED:
        raise DemoSeedError(f"the simulated crowd's filter run {run.pk} ended {run.status}: {run.message}")
    return run


def _export(project: Project, run: FilterRun, researcher) -> DatasetExport:
    export = _succeeded_export(project, run)
    if export is not None:
        return export
    export = dataset_export_create(project=project, format=EXPORT_FORMAT, container="parquet", filter_run=run,
                                   created_by=researcher, enqueue=False)
    export = dataset_export_build(export_id=export.pk)
    if export.status != DatasetExport.Status.SUCCEEDED:
        raise DemoSeedError(f"the simulated crowd's export {export.pk} ended {export.status}: {export.message}")
    return export
