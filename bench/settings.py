"""The app's own settings, plus the bare view the toggle benchmark compares against."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
