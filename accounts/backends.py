from django.contrib.auth import backends
from django.contrib.auth.models import Group, Permission
from django.db.models import Q

from accounts.models import User


class ModelBackend(backends.ModelBackend):
    """Django's ModelBackend, reading a user's own and group permissions in one query, not two.

    Every page asks for them (the header links to the support console for those who may use it).
    """

    def get_all_permissions(self, user_obj, obj=None):
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        if not hasattr(user_obj, "_perm_cache"):
            permissions = Permission.objects.all()
            if not user_obj.is_superuser:
                own = User.user_permissions.through.objects.filter(user=user_obj)
                of_groups = Group.permissions.through.objects.filter(group__user=user_obj)
                permissions = permissions.filter(
                    Q(pk__in=own.values("permission")) | Q(pk__in=of_groups.values("permission"))
                )
            rows = permissions.values_list("content_type__app_label", "codename").order_by()
            user_obj._perm_cache = {f"{app}.{codename}" for app, codename in rows}
        return user_obj._perm_cache
