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
    path("subjects/<uuid:subject_id>/", views.subject_page, name="subject"),
    path("subjects/<uuid:subject_id>/audit/", views.subject_audit, name="subject_audit"),
    path(
        "subjects/<uuid:subject_id>/history.csv",
        views.subject_export,
        {"export": "csv"},
        name="subject_csv",
    ),
    path(
        "subjects/<uuid:subject_id>/history.json",
        views.subject_export,
        {"export": "json"},
        name="subject_json",
    ),
]
