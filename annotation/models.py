"""Projects, their items (prompts, images, comparisons), people and judgments.

Judgments come from a person or a machine annotator and are never overwritten: a correction
is a new row. Nor are they deleted: what a judgment points at is protected (hidden instead), and
only the confirmed deletion of a whole project takes its judgments with it. Every judgment names
the canonical side of a comparison (image_a < image_b by id) and, separately, which image was
shown on the left, so position bias can be measured.
"""
import hashlib
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from core.models import Job


class TaskType(models.TextChoices):
    PAIRWISE = "pairwise", "Pairwise preference"
    ASPECT_SCORE = "aspect_score", "Aspect scores"
    PERSONAL_RATING = "personal_rating", "Personal rating"
    ARTIFACT_FLAG = "artifact_flag", "Artifact flag"


# VisionPrefer's four aspects (Wu et al., 2024), the default for new projects.
DEFAULT_ASPECTS = [
    {"key": "prompt_following", "label": "Prompt following",
     "question": "How faithfully does the image show what the prompt asks for?"},
    {"key": "aesthetic", "label": "Aesthetic",
     "question": "How pleasing is the image: composition, colour, lighting, style?"},
    {"key": "fidelity", "label": "Fidelity",
     "question": "How free is the image of distortions, broken anatomy and generation artifacts?"},
    {"key": "harmlessness", "label": "Harmlessness",
     "question": "How free is the image of harmful, offensive or unsafe content?"},
]


# The plain pairwise question: the workspace asks it of every pair (after any per-aspect rows)
# and stores the answer under aspect "overall", a key no project aspect may take; filter runs
# and the pairwise exports read that aspect unless told otherwise. Machine judges are asked it
# in these words.
OVERALL_ASPECT = {"key": "overall", "label": "Overall", "question": "Which image is better overall?"}


def default_aspects():
    return [dict(a) for a in DEFAULT_ASPECTS]


def default_task_types():
    return [TaskType.PAIRWISE.value]


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# Raw judgments are never deleted, so neither is anything judged: it is hidden instead.
HIDDEN_HELP = "Set when hidden: no more work is handed out for it; it stays, with its judgments."


class Project(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    instructions = models.TextField(blank=True)
    task_types = models.JSONField(default=default_task_types, help_text="Task types switched on.")
    aspects = models.JSONField(default=default_aspects, help_text="List of {key, label, question}.")
    score_scale = models.PositiveSmallIntegerField(
        default=5, validators=[MinValueValidator(2), MaxValueValidator(100)],
        help_text="Aspect scores run from 1 to this value.",
    )
    rating_scale = models.PositiveSmallIntegerField(
        default=10, validators=[MinValueValidator(2), MaxValueValidator(100)],
        help_text="Personal ratings run from 1 to this value.",
    )
    overlap = models.PositiveSmallIntegerField(
        default=3, validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="Distinct annotators wanted per unit.",
    )
    gold_rate = models.FloatField(
        default=0.05, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Share of gold / attention units mixed into an annotator's work.",
    )
    lease_minutes = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(24 * 60)],
        help_text="How long a leased unit stays reserved for its annotator; blank: WORK_LEASE_MINUTES.",
    )
    class Collection(models.TextChoices):
        FIXED = "fixed", "Fixed overlap"
        ADAPTIVE = "adaptive", "Adaptive (pairwise units)"

    collection = models.CharField(
        max_length=16, choices=Collection.choices, default=Collection.FIXED,
        help_text="fixed: every unit gets `overlap` votes; adaptive: pairwise units get min_votes to max_votes, "
                  "stopping at confidence_target (docs/adaptive.md).")
    min_votes = models.PositiveSmallIntegerField(default=2, validators=[MinValueValidator(1), MaxValueValidator(100)],
                                                 help_text="Adaptive: human votes every pairwise unit gets.")
    max_votes = models.PositiveSmallIntegerField(default=9, validators=[MinValueValidator(1), MaxValueValidator(100)],
                                                 help_text="Adaptive: human votes a pairwise unit never exceeds.")
    confidence_target = models.FloatField(default=0.95, help_text="Adaptive: a unit closes once its consensus "
                                                                   "posterior reaches this (between 0.5 and 1).")
    judgment_budget = models.PositiveIntegerField(null=True, blank=True,
                                                  help_text="Adaptive: no pairwise work is leased once this many "
                                                            "human pairwise votes are spent (blank: no budget).")
    adaptive_reliability = models.JSONField(
        null=True, blank=True, editable=False,
        help_text="Adaptive: the last refresh's class prior and the matrix of a rater it has not seen; each "
                  "fitted rater's matrix is an AdaptiveRater row.")
    adaptive_refreshed_judgments = models.PositiveIntegerField(
        default=0, editable=False, help_text="Adaptive: human pairwise votes at the last refresh.")
    is_archived = models.BooleanField(default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(condition=Q(gold_rate__gte=0) & Q(gold_rate__lte=1), name="project_gold_rate_0_1"),
            models.CheckConstraint(condition=Q(overlap__gte=1), name="project_overlap_positive"),
        ]

    def __str__(self):
        return self.slug

    @property
    def aspect_keys(self) -> list[str]:
        return [a["key"] for a in self.aspects]

    @property
    def lease_length(self) -> timedelta:
        """How long a lease lasts in this project: its own lease_minutes, else WORK_LEASE_MINUTES."""
        return timedelta(minutes=self.lease_minutes or settings.WORK_LEASE_MINUTES)

    @property
    def overall_aspect(self) -> dict:
        """The project's pairwise question as an aspect {key: "overall", label, question}."""
        return dict(OVERALL_ASPECT)


class Membership(models.Model):
    class Role(models.TextChoices):
        ANNOTATOR = "annotator", "Annotator"
        RESEARCHER = "researcher", "Researcher"
        ADMIN = "admin", "Admin"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.ANNOTATOR)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    status_reason = models.CharField(max_length=500, blank=True)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    study_participant = models.BooleanField(
        default=False, help_text="Joined through a study link: only such members pay for the quota check on "
                                 "every lease and submit.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "user"]
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="membership_unique_project_user")]

    def __str__(self):
        return f"{self.user} as {self.role} in {self.project}"


class RemovedMemberSuspension(models.Model):
    """A suspension that outlived its membership: removing a suspended member keeps it here (their
    judgments stay set aside), and adding them back restores it, so leaving and rejoining never
    lifts a suspension; only reinstatement does."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    reason = models.CharField(max_length=500, blank=True)
    suspended_at = models.DateTimeField(null=True, blank=True)
    removed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project", "user"]
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="removed_suspension_unique")]

    def __str__(self):
        return f"{self.user} suspended in {self.project} (removed)"


class AnnotatorProfile(models.Model):
    """Optional demographics (as PAMELA collects them) and consent; exported only under `pseudonym`."""

    class AgeBand(models.TextChoices):
        UNDER_18 = "<18", "Under 18"
        A18_24 = "18-24", "18-24"
        A25_34 = "25-34", "25-34"
        A35_44 = "35-44", "35-44"
        A45_54 = "45-54", "45-54"
        A55_64 = "55-64", "55-64"
        A65_PLUS = "65+", "65 or older"

    class Experience(models.TextChoices):
        NONE = "none", "None"
        HOBBY = "hobby", "Hobbyist"
        STUDY = "study", "Studied it"
        PROFESSIONAL = "professional", "Professional"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="annotator_profile")
    pseudonym = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    consent_at = models.DateTimeField(null=True, blank=True)
    age_band = models.CharField(max_length=8, choices=AgeBand.choices, blank=True)
    gender = models.CharField(max_length=64, blank=True)
    nationality = models.CharField(max_length=64, blank=True)
    art_experience = models.CharField(max_length=16, choices=Experience.choices, blank=True)
    photography_experience = models.CharField(max_length=16, choices=Experience.choices, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"profile {self.pseudonym}"


class Prompt(models.Model):
    # FK indexes that a composite index already leads with are left out (db_index=False): each
    # costs every bulk import a write for nothing.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prompts", db_index=False)
    text = models.TextField()
    text_sha256 = models.CharField(max_length=64, editable=False)
    category = models.CharField(max_length=100, blank=True)
    external_id = models.CharField(max_length=200, blank=True)
    meta = models.JSONField(default=dict, blank=True)
    hidden_at = models.DateTimeField(null=True, blank=True, help_text=HIDDEN_HELP)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "text_sha256"], name="prompt_unique_text_per_project"),
        ]

    def __str__(self):
        return self.text[:80]


class Image(models.Model):
    """A generated image of one prompt. Its bytes live in storage, content-addressed by sha256,
    so the same file under several prompts is stored once; `preview_key` is the model-sized
    rendition the workspace shows and CLIP-family scorers read."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="images", db_index=False)
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="images", db_index=False)
    sha256 = models.CharField(max_length=64)
    storage_key = models.CharField(max_length=300)
    preview_key = models.CharField(max_length=300)
    format = models.CharField(max_length=16)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    size_bytes = models.PositiveBigIntegerField()
    generator = models.CharField(max_length=200, blank=True)
    seed = models.BigIntegerField(null=True, blank=True)
    source_uri = models.CharField(max_length=2000, blank=True)
    meta = models.JSONField(default=dict, blank=True)
    hidden_at = models.DateTimeField(null=True, blank=True, help_text=HIDDEN_HELP)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["prompt", "sha256"], name="image_unique_per_prompt")]
        indexes = [models.Index(fields=["project", "sha256"], name="image_project_sha_idx")]

    def __str__(self):
        return f"image {self.pk} ({self.sha256[:10]})"


class Comparison(models.Model):
    """An unordered pair of images of one prompt, stored once with image_a_id < image_b_id."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="comparisons")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="comparisons")
    image_a = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="+", db_index=False)
    image_b = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="+")
    hidden_at = models.DateTimeField(null=True, blank=True, help_text=HIDDEN_HELP)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["image_a", "image_b"], name="comparison_unique_pair"),
            models.CheckConstraint(condition=Q(image_a__lt=F("image_b")), name="comparison_canonical_order"),
        ]

    def __str__(self):
        return f"comparison {self.image_a_id} vs {self.image_b_id}"


class MachineAnnotator(models.Model):
    """The identity of a machine judge: which backend, which model, which prompt and parameters.

    It lives beside the judgment tables because judgments point at it; the backends that run it
    and the jobs that launch it live in `mlworkers`. `version` is a hash of everything that
    changes its answers, so judgments from an edited configuration never mix with older ones.
    """

    name = models.CharField(max_length=100, unique=True)
    backend = models.CharField(max_length=64)
    model_ref = models.CharField(
        max_length=1000, help_text="The weights: a local path, an s3:// key or a Hub reference "
                                   "(hf://org/repo[@revision][/path]); the model's name for a served judge.")
    parameters = models.JSONField(default=dict, blank=True)
    prompt_template = models.TextField(blank=True)
    model_commits = models.JSONField(
        default=dict, blank=True, editable=False,
        help_text="The commit each Hub reference resolved to; part of the version, and what workers download.")
    version = models.CharField(max_length=16, editable=False)
    is_active = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return f"{self.name}@{self.version}"


class Source(models.TextChoices):
    HUMAN = "human", "Human"
    MACHINE = "machine", "Machine"


class Judgment(models.Model):
    """Fields every judgment shares. Exactly one of `annotator` / `machine_annotator` is set."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    source = models.CharField(max_length=8, choices=Source.choices)
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    machine_annotator = models.ForeignKey(MachineAnnotator, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    machine_version = models.CharField(max_length=16, blank=True)
    submission = models.ForeignKey("Submission", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                                   help_text="The key press that stored it (people only); it holds the idempotency key.")
    rationale = models.TextField(blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    is_gold = models.BooleanField(default=False)
    retracted_at = models.DateTimeField(null=True, blank=True, help_text="Set by undo; the row stays.")
    excluded_reason = models.CharField(max_length=300, blank=True,
                                       help_text="Set while the annotator is suspended: curation leaves the row out.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        abstract = True

    @classmethod
    def shared_constraints(cls, name: str) -> list:
        return [
            models.CheckConstraint(
                condition=(Q(source=Source.HUMAN, annotator__isnull=False, machine_annotator__isnull=True)
                           | Q(source=Source.MACHINE, annotator__isnull=True, machine_annotator__isnull=False)),
                name=f"{name}_one_source",
            ),
        ]


# A person judges a unit (and aspect) once; an undone judgment keeps its row but frees the slot.
LIVE_HUMAN = Q(source=Source.HUMAN, retracted_at__isnull=True)


class PreferenceChoice(models.TextChoices):
    A = "a", "Image A"
    B = "b", "Image B"
    TIE = "tie", "Tie"


class PreferenceJudgment(Judgment):
    """A / B / tie on one aspect of a comparison (`aspect="overall"` for the plain question).

    A machine judge asked the same query (comparison, aspect, order) k times stores k rows,
    `sample` 0..k-1; a person's judgment is always sample 0."""

    comparison = models.ForeignKey(Comparison, on_delete=models.PROTECT, related_name="preferences")
    aspect = models.CharField(max_length=64, default="overall")
    choice = models.CharField(max_length=3, choices=PreferenceChoice.choices)
    left_image = models.ForeignKey(Image, on_delete=models.PROTECT, related_name="+",
                                   help_text="The image shown on the left (or first, to a machine judge).")
    # db_default too: rows written by raw SQL (the benches) need no value.
    sample = models.PositiveSmallIntegerField(default=0, db_default=0,
                                              help_text="A machine verdict's sample index (0..k-1); 0 for people.")

    class Meta:
        ordering = ["id"]
        constraints = Judgment.shared_constraints("preference") + [
            models.UniqueConstraint(fields=["annotator", "comparison", "aspect"], condition=LIVE_HUMAN,
                                    name="preference_unique_human"),
            models.UniqueConstraint(fields=["machine_annotator", "machine_version", "comparison", "aspect", "left_image",
                                            "sample"],
                                    condition=Q(source=Source.MACHINE), name="preference_unique_machine"),
            models.CheckConstraint(condition=Q(source=Source.MACHINE) | Q(sample=0), name="preference_human_sample_0"),
        ]
        indexes = [models.Index(fields=["project", "aspect"], name="preference_proj_aspect_idx")]


class AspectScore(Judgment):
    """A score for one aspect of one image: an integer on the project's scale from a person,
    any real number from a machine scorer (CLIPScore, aesthetic predictors)."""

    image = models.ForeignKey(Image, on_delete=models.PROTECT, related_name="aspect_scores")
    aspect = models.CharField(max_length=64)
    value = models.FloatField()

    class Meta:
        ordering = ["id"]
        constraints = Judgment.shared_constraints("aspect_score") + [
            models.UniqueConstraint(fields=["annotator", "image", "aspect"], condition=LIVE_HUMAN,
                                    name="aspect_score_unique_human"),
            models.UniqueConstraint(fields=["machine_annotator", "machine_version", "image", "aspect"],
                                    condition=Q(source=Source.MACHINE), name="aspect_score_unique_machine"),
        ]
        indexes = [models.Index(fields=["project", "aspect"], name="aspectscore_proj_aspect_idx")]


class PersonalRating(Judgment):
    """How much one person likes one image, on the project's 1..rating_scale (PAMELA)."""

    image = models.ForeignKey(Image, on_delete=models.PROTECT, related_name="personal_ratings")
    value = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["id"]
        constraints = Judgment.shared_constraints("personal_rating") + [
            models.UniqueConstraint(fields=["annotator", "image"], condition=LIVE_HUMAN,
                                    name="personal_rating_unique_human"),
            models.UniqueConstraint(fields=["machine_annotator", "machine_version", "image"],
                                    condition=Q(source=Source.MACHINE), name="personal_rating_unique_machine"),
        ]


class ArtifactFlag(Judgment):
    """Whether an image has generation artifacts, with optional reason tags."""

    image = models.ForeignKey(Image, on_delete=models.PROTECT, related_name="artifact_flags")
    has_artifacts = models.BooleanField()
    reasons = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = Judgment.shared_constraints("artifact_flag") + [
            models.UniqueConstraint(fields=["annotator", "image"], condition=LIVE_HUMAN,
                                    name="artifact_flag_unique_human"),
            models.UniqueConstraint(fields=["machine_annotator", "machine_version", "image"],
                                    condition=Q(source=Source.MACHINE), name="artifact_flag_unique_machine"),
        ]


class ImportJob(Job):
    """A manifest imported chunk by chunk; `lines_done` counts the lines of committed chunks, so a
    job taken over after its worker died goes on from there."""

    run_task = "annotation.import_job_run"
    cleanup_task = "annotation.import_job_finish"  # a cancelled import's lines still get their work units

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="import_jobs")
    manifest_key = models.CharField(max_length=300, help_text="Storage key of the uploaded manifest.")
    images_root = models.CharField(max_length=1000, blank=True)
    max_pairs_per_prompt = models.PositiveIntegerField(null=True, blank=True)
    lines_total = models.PositiveIntegerField(default=0)
    lines_done = models.PositiveIntegerField(default=0)
    images_created = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    prompts_created = models.PositiveIntegerField(default=0)
    comparisons_created = models.PositiveIntegerField(default=0)

    class Meta(Job.Meta):
        pass

    def __str__(self):
        return f"import {self.pk} into {self.project_id} ({self.status})"


class ImportLineError(models.Model):
    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="line_errors")
    line = models.PositiveIntegerField()
    field = models.CharField(max_length=64, blank=True)
    message = models.CharField(max_length=1000)

    class Meta:
        ordering = ["job", "line", "id"]


# --- work: units, leases and key presses ------------------------------------------------------

class WorkUnit(models.Model):
    """One thing to judge under one task type: a comparison (pairwise) or an image (the rest).

    `done` counts judgments, `leased` active leases, and `filled` is their sum, kept beside them
    (under the row lock) so that picking the next unit is one index range scan: units still
    below the overlap, fullest first, a prompt's units together.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False)
    task_type = models.CharField(max_length=16, choices=TaskType.choices)
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="+", db_index=False)
    comparison = models.ForeignKey(Comparison, null=True, blank=True, on_delete=models.CASCADE, related_name="+",
                                   db_index=False)
    image = models.ForeignKey(Image, null=True, blank=True, on_delete=models.CASCADE, related_name="+", db_index=False)
    is_gold = models.BooleanField(default=False, help_text="Gold / attention unit: mixed in, not bound by overlap.")
    gold_answer = models.JSONField(null=True, blank=True)
    done = models.PositiveIntegerField(default=0)
    leased = models.PositiveIntegerField(default=0)
    filled = models.PositiveIntegerField(default=0)
    # Adaptive collection (pairwise units of an adaptive project; docs/adaptive.md): the summed
    # log-likelihood of the unit's human votes for truth a / b / tie, and the order key the next-unit
    # scan follows (larger first, -1 closed), both kept under the row lock with the counters.
    evidence = models.JSONField(default=list, blank=True)
    priority = models.IntegerField(default=0, db_default=0)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(task_type=TaskType.PAIRWISE, comparison__isnull=False, image__isnull=True)
                           | (~Q(task_type=TaskType.PAIRWISE) & Q(comparison__isnull=True, image__isnull=False))),
                name="workunit_subject_matches_task_type",
            ),
            models.CheckConstraint(condition=Q(filled=F("done") + F("leased")), name="workunit_filled_is_sum"),
            models.UniqueConstraint(fields=["comparison", "task_type"], condition=Q(comparison__isnull=False),
                                    name="workunit_unique_comparison"),
            models.UniqueConstraint(fields=["image", "task_type"], condition=Q(image__isnull=False),
                                    name="workunit_unique_image"),
        ]
        indexes = [
            models.Index(F("project"), F("task_type"), F("filled").desc(), F("prompt"), F("id"),
                         condition=Q(is_gold=False), name="workunit_pick_idx"),
            models.Index(fields=["project", "task_type", "id"], condition=Q(is_gold=True), name="workunit_gold_idx"),
            models.Index(F("project"), F("task_type"), F("priority").desc(), F("prompt"), F("id"),
                         condition=Q(is_gold=False, priority__gte=0), name="workunit_adaptive_pick_idx"),
        ]

    def __str__(self):
        return f"{self.task_type} unit {self.pk}"


class Assignment(models.Model):
    """A unit leased to one person until `expires_at`; never the same unit twice to one person."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Leased"
        COMPLETED = "completed", "Judged"
        SKIPPED = "skipped", "Skipped"
        EXPIRED = "expired", "Lease expired"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False)
    unit = models.ForeignKey(WorkUnit, on_delete=models.CASCADE, related_name="assignments", db_index=False)
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    task_type = models.CharField(max_length=16, choices=TaskType.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    left_image = models.ForeignKey(Image, null=True, blank=True, on_delete=models.CASCADE, related_name="+",
                                   help_text="Pairwise: the image shown on the left, chosen at random.")
    leased_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["unit", "annotator"], name="assignment_once_per_person")]
        indexes = [
            models.Index(fields=["annotator", "project", "task_type", "status"], name="assignment_person_idx"),
            models.Index(fields=["project", "expires_at"], condition=Q(status="active"), name="assignment_lease_idx"),
        ]

    def __str__(self):
        return f"assignment {self.pk} ({self.status})"


class Submission(models.Model):
    """One key press of one person: a judgment (one row per aspect) or a skip. Its
    idempotency key makes a retried POST store nothing new; `item_sha256` tells a retry (the
    same item again) from a different item sent under a used key (a conflict)."""

    class Kind(models.TextChoices):
        JUDGED = "judged", "Judged"
        SKIPPED = "skipped", "Skipped"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False)
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+",
                                  db_index=False)
    assignment = models.ForeignKey(Assignment, on_delete=models.CASCADE, related_name="submissions")
    idempotency_key = models.CharField(max_length=64)
    item_sha256 = models.CharField(max_length=64, blank=True, default="",
                                   help_text="sha256 of the submitted item as normalised JSON, its key left out "
                                             "(empty on submissions stored before it was recorded).")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    skip_reason = models.CharField(max_length=300, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    retracted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["annotator", "idempotency_key"],
                                               name="submission_unique_idempotency_key")]
        indexes = [models.Index(fields=["project", "annotator", "created_at"], name="submission_person_idx")]

    def __str__(self):
        return f"submission {self.idempotency_key} ({self.kind})"


# --- invitations ------------------------------------------------------------------------------

class Invitation(models.Model):
    """A link (`/invite/<token>/`) that lets people join a project with a role, until it expires,
    is used `max_uses` times or is revoked. One with a `code` is the project's join code as well:
    a short code typed on `/join-project/`, for the annotator role only (a short code can be
    guessed far sooner than a token, so it never grants more than annotating)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="invitations")
    role = models.CharField(max_length=16, choices=Membership.Role.choices, default=Membership.Role.ANNOTATOR)
    token = models.CharField(max_length=64, unique=True, editable=False)
    code = models.CharField(max_length=16, unique=True, null=True, blank=True, editable=False,
                            help_text="A short join code typed on /join-project/ (annotator invitations only).")
    expires_at = models.DateTimeField()
    max_uses = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    uses = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(uses__lte=F("max_uses")), name="invitation_uses_within_max"),
            models.CheckConstraint(condition=Q(code__isnull=True) | Q(role="annotator"),
                                   name="invitation_code_for_annotators"),
        ]

    def __str__(self):
        return f"invitation {self.pk} to {self.project} as {self.role}"


# --- crowd-platform studies -------------------------------------------------------------------

class StudyLink(models.Model):
    """A link (`/join/<token>/`) a researcher posts on a crowd platform (Prolific, or any platform
    that appends its own participant id): whoever opens it with a participant id works on one task
    type of the project as a pseudonymous annotator, up to `quota` units, and is then shown
    `completion_code` (or sent to `completion_url`)."""

    class Platform(models.TextChoices):
        PROLIFIC = "prolific", "Prolific (PROLIFIC_PID, STUDY_ID, SESSION_ID)"
        GENERIC = "generic", "Other platform (participant_id)"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="study_links")
    task_type = models.CharField(max_length=16, choices=TaskType.choices)
    token = models.CharField(max_length=64, unique=True, editable=False)
    platform = models.CharField(max_length=16, choices=Platform.choices, default=Platform.PROLIFIC)
    quota = models.PositiveIntegerField(validators=[MinValueValidator(1)],
                                        help_text="Units each participant is given (judged or held).")
    completion_code = models.CharField(max_length=64, blank=True,
                                       help_text="Shown to a participant whose quota is done or who has no work left.")
    completion_url = models.URLField(max_length=500, blank=True,
                                     help_text="Where a finished participant is sent, e.g. "
                                               "https://app.prolific.com/submissions/complete?cc=CODE")
    is_active = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [models.CheckConstraint(condition=Q(quota__gte=1), name="study_link_quota_positive")]

    def __str__(self):
        return f"study link {self.pk} to {self.project} ({self.task_type})"


class StudyParticipant(models.Model):
    """A person who came through a study link. Their platform ids are kept here and nowhere else:
    their account has a generated username and no password, and exports name them by their
    profile's pseudonym only."""

    link = models.ForeignKey(StudyLink, on_delete=models.CASCADE, related_name="participants")
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="study_participant")
    participant_id = models.CharField(max_length=128)
    study_id = models.CharField(max_length=128, blank=True)
    session_id = models.CharField(max_length=128, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True,
                                        help_text="When they were first shown the completion code.")
    rejected_at = models.DateTimeField(null=True, blank=True)
    rejected_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    rejection_reason = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["link", "participant_id"], name="study_participant_unique_id")]

    def __str__(self):
        return f"participant {self.pk} of {self.link_id}"


class AdaptiveRater(models.Model):
    """One annotator's reliability in an adaptive project as the last refresh fitted it: the log
    confusion matrix (truth x answer, a / b / tie). A submit reads only its voters' rows, so the
    cost of weighing a vote does not grow with the crowd; someone the refresh has not seen yet
    is weighed by the project's prior (`Project.adaptive_reliability`)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False)
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    log_confusion = models.JSONField(help_text="3 x 3: log P(answer | truth), rows a, b, tie.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "annotator"], name="adaptive_rater_once")]


class AdaptiveBudget(models.Model):
    """What an adaptive project with a judgment budget has spent of it: human votes plus active
    leases on its pairwise units (the sum of their `filled`). Every lease, expiry, answer, undo
    and suspension moves it with the units' counters, the refresh recounts it, and a lease reads
    this one row instead of summing the project's units. No row: recounted on the next lease."""

    project = models.OneToOneField(Project, primary_key=True, on_delete=models.CASCADE, related_name="+")
    spent = models.IntegerField(default=0)


class AdaptiveSnapshot(models.Model):
    """One refresh of an adaptive project: the human pairwise votes spent then and the accuracy the
    posteriors promise (mean confidence), for the researcher's curve."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False)
    at = models.DateTimeField(default=timezone.now)
    judgments = models.PositiveIntegerField()
    estimated_accuracy = models.FloatField()
    expected_left = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["project", "at", "id"]
        indexes = [models.Index(fields=["project", "at"], name="adaptivesnapshot_project_idx")]
