from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("annotation", "0006_import_job_lifecycle"),
    ]

    operations = [
        migrations.AddField(
            model_name="submission",
            name="item_sha256",
            field=models.CharField(blank=True, default="", help_text="sha256 of the submitted item as normalised JSON, its key left out (empty on submissions stored before it was recorded).", max_length=64),
        ),
    ]
