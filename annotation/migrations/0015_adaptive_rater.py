import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def raters_to_rows(apps, schema_editor):
    """Each project's fitted matrices move from Project.adaptive_reliability["raters"] to rows."""
    Project = apps.get_model("annotation", "Project")
    AdaptiveRater = apps.get_model("annotation", "AdaptiveRater")
    User = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    for project in Project.objects.exclude(adaptive_reliability=None):
        stored = dict(project.adaptive_reliability)
        raters = stored.pop("raters", {})
        known = set(User.objects.filter(id__in=[int(k) for k in raters]).values_list("id", flat=True))
        AdaptiveRater.objects.bulk_create([AdaptiveRater(project=project, annotator_id=int(key), log_confusion=matrix)
                                           for key, matrix in raters.items() if int(key) in known])
        project.adaptive_reliability = stored
        project.save(update_fields=["adaptive_reliability"])


class Migration(migrations.Migration):

    dependencies = [
        ('annotation', '0014_adaptive_collection'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterField(
            model_name='project',
            name='adaptive_reliability',
            field=models.JSONField(blank=True, editable=False, help_text="Adaptive: the last refresh's class prior and the matrix of a rater it has not seen; each fitted rater's matrix is an AdaptiveRater row.", null=True),
        ),
        migrations.CreateModel(
            name='AdaptiveRater',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('log_confusion', models.JSONField(help_text='3 x 3: log P(answer | truth), rows a, b, tie.')),
                ('annotator', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('project', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='annotation.project')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('project', 'annotator'), name='adaptive_rater_once')],
            },
        ),
        migrations.RunPython(raters_to_rows, migrations.RunPython.noop),
    ]
