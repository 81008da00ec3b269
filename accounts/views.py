from django.conf import settings
from django.contrib.auth import login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordResetForm
from django.db.models import ProtectedError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from accounts.forms import (
    AccountDeleteForm,
    PasswordResetRequestForm,
    SignupConfirmForm,
    SignUpForm,
)
from accounts.limits import counted_over
from accounts.models import User
from accounts.services import SignupPasswordWrong, signup_confirm, signup_request
from config.proxies import client_network
from consent.exceptions import ConsentError
from consent.metadata import RequestMeta
from consent.models import SUPPORT_PERMISSION
from consent.services import Channel, account_delete


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("home")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        # Each hashes a password, at a cost made to be felt: not without end from one client.
        if asked_too_often(request, "sign-up"):
            return too_often(request, "accounts/signup.html", {"form": form})
        email = form.cleaned_data["email"]
        signup_request(
            email=email,
            password=form.cleaned_data["password1"],
            confirm_url=lambda user_id, token: request.build_absolute_uri(
                reverse("signup_confirm", args=[user_id, token])
            ),
            reset_url=request.build_absolute_uri(reverse("password_reset")),
        )
        return render(request, "accounts/signup_sent.html", {"email": email})
    return render(request, "accounts/signup.html", {"form": form})


def asked_too_often(request: HttpRequest, what: str) -> bool:
    """Count one more ask from the client; tell whether ACCOUNT_REQUEST_RATE's limit is passed."""
    return counted_over(f"{what} from {client_network(request)}", settings.ACCOUNT_REQUEST_RATE)


def too_often(request: HttpRequest, template: str, context: dict) -> HttpResponse:
    """Answer 429 on the form's own page, saying so, and when to try again at the latest."""
    error = _("Too many requests from your network: try again later.")
    response = render(request, template, context | {"error": error}, status=429)
    response["Retry-After"] = str(settings.ACCOUNT_REQUEST_RATE[1])
    return response


class PasswordResetView(auth_views.PasswordResetView):
    """Django's password reset view, asked at most ACCOUNT_REQUEST_RATE times from one client."""

    form_class = PasswordResetRequestForm
    template_name = "accounts/password_reset.html"

    def form_valid(self, form: PasswordResetForm) -> HttpResponse:
        # Each ask queues a task, which may mail, and the mail server's time is not free.
        if asked_too_often(self.request, "new password"):
            return too_often(self.request, self.template_name, {"form": form})
        return super().form_valid(form)


@require_http_methods(["GET", "POST"])
def signup_confirmed(request: HttpRequest, user_id: str, token: str) -> HttpResponse:
    """Ask for the password chosen at sign-up, then switch the account on and sign in."""
    if request.user.is_authenticated:
        return redirect("home")
    form = SignupConfirmForm(request.POST or None)
    # Opening the link confirms nothing: not a mail scanner, nor the owner of the inbox for a
    # sign-up someone else made with their address.
    if request.method == "GET" or not form.is_valid():
        status = 400 if form.errors else 200
        return render(request, "accounts/signup_confirm.html", {"form": form}, status=status)
    try:
        user = signup_confirm(user_id=user_id, token=token, password=form.cleaned_data["password"])
    except SignupPasswordWrong:
        form.add_error(
            "password",
            _(
                "That is not the password chosen when signing up with this address. If you "
                "signed up more than once, it is the last one; if you did not sign up, ignore "
                "the mail."
            ),
        )
        return render(request, "accounts/signup_confirm.html", {"form": form}, status=400)
    if user is None:
        return render(request, "accounts/signup_confirm.html", {"expired": True}, status=400)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return redirect("home")


@require_http_methods(["GET", "POST"])
@login_required
def account_delete_own(request: HttpRequest) -> HttpResponse:
    """Delete one's own account once the password is given again, then sign out."""
    user = request.user
    assert isinstance(user, User)  # signed in
    if user.is_staff or user.has_perm(SUPPORT_PERMISSION):  # their looks at users' data stay
        return render(request, "accounts/delete.html", {"staff": True}, status=403)
    form = AccountDeleteForm(request, user, request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            account_delete(
                user=user,
                channel=Channel.SETTINGS,
                meta=RequestMeta.from_request(request),
            )
        except ConsentError as error:
            form.add_error(None, str(error))
        except ProtectedError:  # a former agent, whose access records name them
            return render(request, "accounts/delete.html", {"staff": True}, status=403)
        else:
            logout(request)
            return render(request, "accounts/deleted.html")
    status = 400 if form.errors else 200
    return render(request, "accounts/delete.html", {"form": form}, status=status)


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    # Django's, signing in with the new password, for a confirmed account only: a sign-up's
    # confirmation link is made the same way, and must not set a password instead.

    post_reset_login = True
    post_reset_login_backend = "django.contrib.auth.backends.ModelBackend"
    template_name = "accounts/password_reset_confirm.html"

    def get_user(self, uidb64: str) -> User | None:
        user = super().get_user(uidb64)
        return user if user is not None and user.is_active else None
