"""Auto-annotation jobs: a machine annotator applied to a project's images or pairs.

The judgments themselves live in `annotation` (AspectScore / PreferenceJudgment with
source=machine), unique per annotator version, unit, aspect and presentation order, which is
what makes a rerun write nothing twice.
"""
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q

from annotation.models import Comparison, Image, MachineAnnotator, Project
from core.models import Job

MAX_SAMPLES = 16  # answers asked per (pair, order, aspect) at most


class AutoAnnotationJob(Job):
    """Planned by one task (`mlworkers.auto_job_start`) into chunks of whole prompts, each run by
    its own task on the `gpu` queue. A job whose planning died is taken over like any job; once
    planned, its liveness is its chunks' (see AutoAnnotationChunk)."""

    run_task = "mlworkers.auto_job_start"

    class Kind(models.TextChoices):
        SCORE = "score", "Score images per aspect"
        PAIRS = "pairs", "Judge pairs per aspect"

    class Scope(models.TextChoices):
        ALL = "all", "All"
        UNLABELLED = "unlabelled", "Not yet labelled by this annotator"
        SAMPLE = "sample", "A random sample"

    class Orders(models.TextChoices):
        ONE = "one", "One order"
        BOTH = "both", "Both orders"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="auto_jobs")
    machine_annotator = models.ForeignKey(MachineAnnotator, on_delete=models.PROTECT, related_name="jobs")
    machine_version = models.CharField(max_length=16, help_text="The annotator's version when launched.")
    model_commits = models.JSONField(default=dict, blank=True,
                                     help_text="The Hub commits of that version: what its judgments were made with.")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    scope = models.CharField(max_length=12, choices=Scope.choices, default=Scope.ALL)
    sample_size = models.PositiveIntegerField(null=True, blank=True)
    sample_seed = models.PositiveIntegerField(default=0)
    aspects = models.JSONField(default=list)
    orders = models.CharField(max_length=4, choices=Orders.choices, default=Orders.BOTH)
    samples = models.PositiveSmallIntegerField(
        default=1, validators=[MinValueValidator(1), MaxValueValidator(MAX_SAMPLES)],
        help_text="Pairs: answers asked per pair, order and aspect (several need a judge that samples).")
    items_total = models.PositiveIntegerField(
        default=0, help_text="Items asked of the judge: images, or pairs x orders x samples.")
    items_done = models.PositiveIntegerField(default=0)
    items_failed = models.PositiveIntegerField(default=0)
    chunks_total = models.PositiveIntegerField(default=0)
    chunks_done = models.PositiveIntegerField(default=0)
    planned_at = models.DateTimeField(null=True, blank=True,
                                      help_text="When every chunk was queued (empty while planning).")

    class Meta(Job.Meta):
        constraints = [models.CheckConstraint(condition=Q(samples__gte=1, samples__lte=MAX_SAMPLES),
                                              name="autojob_samples_1_to_16"),
                       # Counted items never outnumber planned ones: each chunk counts into the job
                       # only its own items, once (see AutoAnnotationChunk.items_done).
                       models.CheckConstraint(condition=Q(items_total__gte=F("items_done") + F("items_failed")),
                                              name="autojob_counted_within_total")]

    def __str__(self):
        return f"auto job {self.pk} ({self.machine_annotator_id} on {self.project_id}, {self.status})"

    def worker_alive(self, since) -> bool:
        if self.planned_at is None:  # planning: the planner beats
            return super().worker_alive(since)
        return AutoAnnotationChunk.live(job=self, since=since).exists()

    @classmethod
    def lost_filter(cls) -> Q:
        # A planned job may wait for the gpu queue without a beat; its chunks are watched instead.
        return Q(planned_at__isnull=True)


class AutoAnnotationChunk(models.Model):
    """One task's worth of a job (whole prompts' images or pairs), with its own claim and
    heartbeat: the chunk reaper queues again a chunk whose worker died, and a chunk lost
    JOB_MAX_ATTEMPTS times records its items as failures."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    job = models.ForeignKey(AutoAnnotationJob, on_delete=models.CASCADE, related_name="chunks")
    item_ids = models.JSONField(help_text="Image ids, or comparison ids for pairs.")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    items_total = models.PositiveIntegerField(
        default=0, help_text="Items it was planned to ask: its images, or its pairs' (order, sample) keys not stored.")
    items_done = models.PositiveIntegerField(
        default=0, help_text="What this chunk has counted into its job's items_done: while it runs, the "
                             "running attempt's answers so far (taken back if that attempt is lost); once "
                             "done, its final count.")
    items_failed = models.PositiveIntegerField(default=0, help_text="The same for items_failed.")

    @classmethod
    def live(cls, *, job, since):
        """The job's chunks a worker is running and gave a sign of life after `since`."""
        return cls.objects.filter(job=job, status=cls.Status.RUNNING, heartbeat_at__gte=since)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="autojob_chunk_status_idx")]


class AutoAnnotationFailure(models.Model):
    """An item the judge could not fully answer, once: the aspects it failed on, the reason (one per
    aspect where they differ) and the judge's raw text, never a score. An item is an image, or a
    pair shown in one order for one sample."""

    job = models.ForeignKey(AutoAnnotationJob, on_delete=models.CASCADE, related_name="failures")
    image = models.ForeignKey(Image, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    comparison = models.ForeignKey(Comparison, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    first_image = models.ForeignKey(Image, null=True, blank=True, on_delete=models.CASCADE, related_name="+",
                                    help_text="Pairs: the image shown first.")
    sample = models.PositiveSmallIntegerField(default=0, help_text="Pairs: which of the k samples failed.")
    aspects = models.JSONField(default=list, help_text="The aspect keys that got no answer, in the job's order.")
    error = models.CharField(max_length=1000)
    raw = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
