"""Job pages that tell the truth: chunks keep what they counted into their job (so a lost attempt's
progress is taken back and nothing is counted twice), a job's counted items never outnumber its
planned ones, and a failed item is one row listing the aspects it failed on."""
import django.db.models.expressions
from django.db import migrations, models


def failures_one_row_per_item(apps, schema_editor):
    """Merge the per-aspect rows of one item (same job, image or pair, order, sample) into its
    first row, listing the aspects; where the reasons differ, each is kept with its aspect."""
    Failure = apps.get_model("mlworkers", "AutoAnnotationFailure")
    rows = Failure.objects.order_by("job_id", "image_id", "comparison_id", "first_image_id", "sample", "id")
    kept, extra, merged = None, [], []

    def close():
        if kept is None:
            return
        reasons = {error for _, error in extra}
        if len(reasons) > 1:
            kept.error = "; ".join(f"{aspect}: {error}" if aspect else error for aspect, error in extra)[:1000]
        kept.aspects = [aspect for aspect, _ in extra if aspect]
        merged.append(kept)

    for row in rows.iterator(chunk_size=2000):
        key = (row.job_id, row.image_id, row.comparison_id, row.first_image_id, row.sample)
        if kept is None or key != (kept.job_id, kept.image_id, kept.comparison_id, kept.first_image_id, kept.sample):
            close()
            kept, extra = row, []
        else:
            row.delete()
        extra.append((row.aspect, row.error))
    close()
    Failure.objects.bulk_update(merged, ["aspects", "error"], batch_size=2000)


def totals_cover_counts(apps, schema_editor):
    """Jobs counted past their total before this fix (a resume counting a chunk twice) get the total
    their counters reached, so that the constraint below holds for them too."""
    Job = apps.get_model("mlworkers", "AutoAnnotationJob")
    counted = models.F("items_done") + models.F("items_failed")
    Job.objects.filter(items_total__lt=counted).update(items_total=counted)


class Migration(migrations.Migration):

    dependencies = [
        ('mlworkers', '0004_job_hub_commits'),
    ]

    operations = [
        migrations.AddField(
            model_name='autoannotationfailure',
            name='aspects',
            field=models.JSONField(default=list, help_text="The aspect keys that got no answer, in the job's order."),
        ),
        migrations.RunPython(failures_one_row_per_item, migrations.RunPython.noop),
        migrations.RemoveField(
            model_name='autoannotationfailure',
            name='aspect',
        ),
        migrations.AddField(
            model_name='autoannotationchunk',
            name='items_total',
            field=models.PositiveIntegerField(default=0, help_text="Items it was planned to ask: its images, or its pairs' (order, sample) keys not stored."),
        ),
        migrations.AddField(
            model_name='autoannotationchunk',
            name='items_done',
            field=models.PositiveIntegerField(default=0, help_text="What this chunk has counted into its job's items_done: while it runs, the running attempt's answers so far (taken back if that attempt is lost); once done, its final count."),
        ),
        migrations.AddField(
            model_name='autoannotationchunk',
            name='items_failed',
            field=models.PositiveIntegerField(default=0, help_text='The same for items_failed.'),
        ),
        migrations.RunPython(totals_cover_counts, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name='autoannotationjob',
            constraint=models.CheckConstraint(condition=models.Q(('items_total__gte', django.db.models.expressions.CombinedExpression(models.F('items_done'), '+', models.F('items_failed')))), name='autojob_counted_within_total'),
        ),
    ]
