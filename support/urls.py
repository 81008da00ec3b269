from django.urls import path

from support import views

app_name = "support"
urlpatterns = [
    path("", views.search, name="search"),
    path("users/<row_id:user_id>/", views.user_page, name="user"),
    path("users/<row_id:user_id>/audit/", views.user_audit, name="audit"),
    path("users/<row_id:user_id>/history.csv", views.user_export, {"export": "csv"}, name="csv"),
    path("users/<row_id:user_id>/history.json", views.user_export, {"export": "json"}, name="json"),
    path("users/<row_id:user_id>/change/", views.user_change, name="change"),
]
