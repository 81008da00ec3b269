from django.urls import path

from consent import views

urlpatterns = [
    path("", views.home, name="home"),
    path("consent/decision/", views.popup_decide, name="consent_decide"),
    path("consent/not-now/", views.popup_defer, name="consent_defer"),
    path("settings/privacy/", views.privacy_settings, name="privacy_settings"),
    path("settings/privacy/choice/", views.privacy_choose, name="privacy_choose"),
    path("settings/privacy/history/", views.privacy_history, name="privacy_history"),
    path("settings/privacy/runs/", views.privacy_runs, name="privacy_runs"),
    path(
        "settings/privacy/propagation/",
        views.privacy_propagation,
        name="privacy_propagation",
    ),
    path(
        "settings/privacy/history/<event_number:number>/receipt/",
        views.privacy_receipt,
        name="privacy_receipt",
    ),
    path("help/privacy/", views.help_privacy, name="help_privacy"),
    path("help/privacy/terms/<event_number:version>/", views.help_terms, name="privacy_terms"),
]
