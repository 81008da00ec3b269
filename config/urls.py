from django.contrib import admin
from django.urls import include, path, register_converter
from django.views.generic import RedirectView

from config.api import api
from config.converters import EventNumber, RowId
from config.health import healthz
from config.metrics import MetricsView

register_converter(RowId, "row_id")
register_converter(EventNumber, "event_number")

urlpatterns = [
    path("", include("consent.urls")),
    path("accounts/", include("accounts.urls")),
    path("support/", include("support.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", RedirectView.as_view(pattern_name="api:openapi-view"), name="api-root"),
    path("api/v1/", api.urls),
    path("healthz", healthz, name="healthz"),
    path("metrics", MetricsView.as_view(), name="metrics"),
]
