from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from consent.selectors import consent_for, prompt_for


@require_GET
@login_required
def home(request: HttpRequest) -> HttpResponse:
    user = request.user
    return render(
        request,
        "consent/home.html",
        {"consent": consent_for(user), "prompt": prompt_for(user)},  # type: ignore[arg-type]
    )
