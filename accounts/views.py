from django.contrib.auth import login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from accounts.forms import SignUpForm
from accounts.services import signup_confirm, signup_request


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("home")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        email = form.cleaned_data["email"]
        signup_request(
            email=email,
            password=form.cleaned_data["password1"],
            confirm_url=lambda user_id, token: request.build_absolute_uri(
                reverse("signup_confirm", args=[user_id, token])
            ),
        )
        return render(request, "accounts/signup_sent.html", {"email": email})
    return render(request, "accounts/signup.html", {"form": form})


@require_http_methods(["GET", "POST"])
def signup_confirmed(request: HttpRequest, user_id: str, token: str) -> HttpResponse:
    """Ask for a click to confirm (a mail scanner that opens the link confirms nothing), then
    activate the account and sign in."""
    if request.user.is_authenticated:
        return redirect("home")
    if request.method == "GET":
        return render(request, "accounts/signup_confirm.html")
    user = signup_confirm(user_id=user_id, token=token)
    if user is None:
        return render(request, "accounts/signup_confirm.html", {"expired": True}, status=400)
    login(request, user, backend="accounts.backends.SignInBackend")
    return redirect("home")
