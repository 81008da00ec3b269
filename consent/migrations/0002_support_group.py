from django.db import migrations

SUPPORT_GROUP = "Support"


def create_support_group(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    content_type, _ = ContentType.objects.get_or_create(app_label="consent", model="consentevent")
    permission, _ = Permission.objects.get_or_create(
        codename="view_consent_history",
        content_type=content_type,
        defaults={"name": "Can view users' consent history"},
    )
    group, _ = Group.objects.get_or_create(name=SUPPORT_GROUP)
    group.permissions.add(permission)


def remove_support_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=SUPPORT_GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("consent", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(create_support_group, remove_support_group)]
