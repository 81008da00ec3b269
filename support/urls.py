from django.urls import path

from support import views

app_name = "support"
urlpatterns = [
    path("", views.search, name="search"),
    path("users/<int:user_id>/", views.user_page, name="user"),
    path("users/<int:user_id>/audit/", views.user_audit, name="audit"),
    path("users/<int:user_id>/history.csv", views.user_export, {"export": "csv"}, name="csv"),
    path("users/<int:user_id>/history.json", views.user_export, {"export": "json"}, name="json"),
    path("users/<int:user_id>/change/", views.user_change, name="change"),
]
