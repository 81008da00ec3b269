"""A training run's name is registered once. Runs registered before under a name already taken
keep their place in the ledger under the name with " (2)", " (3)"... added, oldest first."""

from django.db import migrations, models


def names_made_unique(apps, schema_editor):
    TrainingRun = apps.get_model("consent", "TrainingRun")
    taken: set[str] = set()
    for run in TrainingRun.objects.order_by("created_at", "pk"):
        name, copy = run.name, 1
        while name in taken:
            copy += 1
            suffix = f" ({copy})"
            name = run.name[: 200 - len(suffix)] + suffix
        if name != run.name:
            TrainingRun.objects.filter(pk=run.pk).update(name=name)
        taken.add(name)


class Migration(migrations.Migration):
    dependencies = [
        ("consent", "0014_delivery_request_id"),
    ]

    operations = [
        migrations.RunPython(names_made_unique, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="trainingrun",
            name="name",
            field=models.CharField(max_length=200, unique=True, verbose_name="name"),
        ),
    ]
