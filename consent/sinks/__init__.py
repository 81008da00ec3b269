"""Downstream stores that act on consent, configured in settings.CONSENT_SINKS like DATABASES."""

from functools import cache
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from consent.sinks.base import Change, Outcome, Sink

__all__ = ["Change", "Outcome", "Sink", "configured_sinks", "sink_named"]


@cache
def configured_sinks() -> dict[str, Sink]:
    """Return every configured sink by name, built once per process."""
    sinks: dict[str, Any] = settings.CONSENT_SINKS
    return {
        name: import_string(config["BACKEND"])(name=name, **config.get("OPTIONS", {}))
        for name, config in sinks.items()
    }


def sink_named(name: str) -> Sink:
    return configured_sinks()[name]


@receiver(setting_changed)
def _forget_sinks(*, setting: str, **kwargs: object) -> None:
    if setting == "CONSENT_SINKS":
        configured_sinks.cache_clear()
