from functools import cache

from django.contrib.auth import backends
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection

from accounts.models import User


@cache
def _permissions_sql() -> str:
    """Return the query of a user's own and group permissions, on the models' tables."""
    own = User.user_permissions.through._meta.db_table
    member = User.groups.through._meta.db_table
    granted = Group.permissions.through._meta.db_table
    return (
        f"SELECT ct.app_label, p.codename FROM {Permission._meta.db_table} p "  # noqa: S608
        f"JOIN {ContentType._meta.db_table} ct ON ct.id = p.content_type_id "
        f"WHERE p.id IN (SELECT permission_id FROM {own} WHERE user_id = %s) "
        f"OR p.id IN (SELECT g.permission_id FROM {granted} g "
        f"JOIN {member} m ON m.group_id = g.group_id WHERE m.user_id = %s)"
    )


# Every page asks for the user's permissions (the header links to the support console for those
# who may use it), so they are read in one plain query: Django's ModelBackend makes two ORM
# queries, which took longer to compile than PostgreSQL took to answer them.
class ModelBackend(backends.ModelBackend):
    """Django's ModelBackend, reading a user's own and group permissions in one query."""

    def get_all_permissions(self, user_obj, obj=None):
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        if not hasattr(user_obj, "_perm_cache"):
            if user_obj.is_superuser:
                rows = Permission.objects.values_list("content_type__app_label", "codename")
            else:
                with connection.cursor() as cursor:
                    cursor.execute(_permissions_sql(), [user_obj.pk, user_obj.pk])
                    rows = cursor.fetchall()
            user_obj._perm_cache = {f"{app}.{codename}" for app, codename in rows}
        return user_obj._perm_cache
