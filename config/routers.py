class WarehouseRouter:
    """Keep the app's own tables out of the warehouse database; it holds only what sinks write."""

    def allow_migrate(self, db: str, app_label: str, **hints: object) -> bool | None:
        return db != "warehouse"
