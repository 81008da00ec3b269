from django.db.models import Model

WAREHOUSE = "warehouse"
WAREHOUSE_MODELS = {
    ("consent", "eligibilityrecord"),
    ("consent", "eligibilityinterval"),
    ("consent", "checkpointcopy"),
    ("consent", "termscopy"),
}


class WarehouseRouter:
    """Send the eligibility tables and the copies kept outside the app's own to the warehouse."""

    def _in_warehouse(self, model: type[Model]) -> bool:
        return (model._meta.app_label, model._meta.model_name) in WAREHOUSE_MODELS

    def db_for_read(self, model: type[Model], **hints: object) -> str | None:
        return WAREHOUSE if self._in_warehouse(model) else None

    def db_for_write(self, model: type[Model], **hints: object) -> str | None:
        return WAREHOUSE if self._in_warehouse(model) else None

    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: object
    ) -> bool | None:
        in_warehouse = (app_label, model_name) in WAREHOUSE_MODELS
        return in_warehouse if db == WAREHOUSE else not in_warehouse
