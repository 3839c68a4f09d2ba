import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('annotation', '0015_adaptive_rater'),
    ]

    operations = [
        migrations.CreateModel(
            name='AdaptiveBudget',
            fields=[
                ('project', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='+', serialize=False, to='annotation.project')),
                ('spent', models.IntegerField(default=0)),
            ],
        ),
    ]
