from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("consent", "0010_admin_search_indexes"),
    ]

    operations = [
        migrations.RenameField(
            model_name="trainingconsent", old_name="version", new_name="head_number"
        ),
        migrations.AddField(
            model_name="trainingconsent",
            name="paced_until",
            field=models.DateTimeField(
                blank=True, editable=False, null=True, verbose_name="rate limit: next change due at"
            ),
        ),
        migrations.RemoveIndex(model_name="delivery", name="delivery_sink_subject"),
        migrations.RenameField(model_name="delivery", old_name="version", new_name="event_number"),
        migrations.AlterField(
            model_name="delivery",
            name="event_number",
            field=models.PositiveIntegerField(verbose_name="event number"),
        ),
        migrations.AddIndex(
            model_name="delivery",
            index=models.Index(
                fields=["sink", "subject_id", "event_number"], name="delivery_sink_subject"
            ),
        ),
        migrations.RemoveIndex(model_name="consentevent", name="own_decisions"),
    ]
