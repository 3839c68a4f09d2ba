"""Filter runs: a named, versioned set of rules applied to a project's judgments, and the
keep / drop verdict with its reasons for every unit. Raw judgments are never touched."""
from django.db import models
from django.db.models import Q

from annotation.models import Comparison, Project
from core.models import Job


class FilterRun(Job):
    """Rerun from the start when taken over: its verdicts are written in one transaction."""

    run_task = "curation.filter_run_execute"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="filter_runs")
    name = models.CharField(max_length=100)
    version = models.PositiveIntegerField(help_text="1, 2, ... per project and name.")
    rules = models.JSONField(help_text="The rules and thresholds, complete with defaults.")
    summary = models.JSONField(default=dict, blank=True, help_text="The report's figures.")

    class Meta(Job.Meta):
        constraints = [models.UniqueConstraint(fields=["project", "name", "version"], name="filter_run_unique_version")]

    def __str__(self):
        return f"{self.name} v{self.version} on {self.project_id} ({self.status})"


class DropReason(models.TextChoices):
    """The kind of a dropped unit's first reason (its `reasons` spell out every one)."""

    UNDECIDED = "undecided", "No consensus"
    TIE = "tie", "A tie, and ties are dropped"
    LIKELY_WRONG = "likely_wrong", "Likely wrong by the machine judges"
    MISSING_IMAGE = "missing_image", "An image file is missing"


class UnitVerdict(models.Model):
    """Keep or drop one pairwise unit, with every reason, and the consensus it rests on."""

    run = models.ForeignKey(FilterRun, on_delete=models.CASCADE, related_name="verdicts")
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="+", db_index=False)
    keep = models.BooleanField()
    consensus = models.CharField(max_length=10, help_text="a, b, tie or undecided")
    confidence = models.FloatField(null=True)
    strength = models.FloatField(null=True, help_text="Preference strength across the machine judges (mean "
                                 "z-normalised score difference for the consensus side), where measured.")
    reasons = models.JSONField(default=list)
    drop_reason = models.CharField(max_length=16, choices=DropReason.choices, blank=True,
                                   help_text="Blank for a kept unit; else the kind of its first reason.")

    class Meta:
        ordering = ["id"]
        constraints = [models.UniqueConstraint(fields=["comparison", "run"], name="unit_verdict_once_per_run")]
        indexes = [models.Index(fields=["run", "keep"], name="unit_verdict_run_keep_idx")]


class DatasetExport(Job):
    """One dataset written from a project (through a filter run's verdicts when one is named) in one
    format and container to a local folder or an s3:// prefix. `manifest` is what manifest.json holds.

    `destination_key` claims the destination: no two exports that have not failed or been
    cancelled share one, so two exports never publish to one place."""

    run_task = "curation.dataset_export_build"
    cleanup_task = "curation.dataset_export_cleanup"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="dataset_exports")
    filter_run = models.ForeignKey(FilterRun, null=True, blank=True, on_delete=models.PROTECT, related_name="exports")
    format = models.CharField(max_length=16, help_text="pickapic, visionprefer, pamela or trl")
    container = models.CharField(max_length=16, help_text="parquet, jsonl or webdataset")
    destination = models.CharField(max_length=1000, help_text="A local folder or s3://bucket/prefix.")
    destination_key = models.CharField(max_length=1000, blank=True,
                                       help_text="The destination, normalised: what the claim is unique on.")
    options = models.JSONField(default=dict, blank=True, help_text="Format options, complete with defaults.")
    rows_total = models.PositiveBigIntegerField(default=0)
    rows_done = models.PositiveBigIntegerField(default=0)
    manifest = models.JSONField(default=dict, blank=True)

    class Meta(Job.Meta):
        constraints = [models.UniqueConstraint(
            fields=["destination_key"], condition=~Q(status__in=["failed", "cancelled"]) & ~Q(destination_key=""),
            name="dataset_export_destination_claimed_once")]

    def __str__(self):
        return f"{self.format}/{self.container} export of {self.project_id} to {self.destination} ({self.status})"
