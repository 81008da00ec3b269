"""/metrics for Prometheus, and the latency of every view."""

import ipaddress
import secrets
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.http.response import HttpResponseBase
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from prometheus_client import CollectorRegistry, multiprocess
from prometheus_client.django import PrometheusDjangoView

from config.proxies import client_address
from consent.metrics import REQUEST_LATENCY, DatabaseCollector


def scrape_allowed(request: HttpRequest) -> bool:
    """Let in a scraper with the METRICS_TOKEN bearer token, or one on METRICS_ALLOWED_NETWORKS."""
    token = settings.METRICS_TOKEN
    offered = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if token and offered and secrets.compare_digest(offered.encode(), token.encode()):
        return True
    try:
        address = ipaddress.ip_address(client_address(request))
    except ValueError:
        return False
    return any(address in network for network in settings.METRICS_ALLOWED_NETWORKS)


@method_decorator(never_cache, name="dispatch")
class MetricsView(PrometheusDjangoView):
    http_method_names = ["get"]

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not scrape_allowed(request):
            return HttpResponseForbidden("Metrics need the token or an allowed network.\n")
        return super().dispatch(request, *args, **kwargs)

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        self.registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(self.registry)
        self.registry.register(DatabaseCollector())
        return super().get(request, *args, **kwargs)


# Anyone can send any method: a label per made-up one would grow the metrics without end.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestLatencyMiddleware:
    """Time every request and file it under the name of the view that answered."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = request.resolver_match
        view = match.view_name if match else "unmatched"
        method = request.method if request.method in METHODS else "other"
        REQUEST_LATENCY.labels(view, method).observe(time.perf_counter() - started)
        return response
