from django.urls import path

from consent import views

urlpatterns = [
    path("", views.home, name="home"),
]
