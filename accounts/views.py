from __future__ import annotations

import qrcode
import qrcode.image.svg
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST
from django_otp import login as otp_login
from django_otp import match_token, user_has_device

from accounts import services
from accounts.devices import AuthenticatorDevice
from accounts.forms import CodeForm, ProfileForm, SecurityForm, TokenForm
from accounts.models import ApiToken, LoginAttempt
from accounts.throttle import client_ip
from core import audit
from core.generic import PortalListView, form_errors_from
from core.models import AuditEntry
from core.pagination import KeysetListMixin
from core.policy import DELETE, restrict


def _safe_next(request, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return reverse(default)


def profile(request):
    form = ProfileForm(request.POST or None, request.FILES or None, instance=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            services.do_update_profile(request.user, actor=request.user, data=form.cleaned_data)
            messages.success(request, "Profile saved.")
            return redirect("account")
        except ValidationError as exc:
            form_errors_from(form, exc)
    return render(
        request, "accounts/profile.html", {"form": form}, status=400 if form.errors else 200
    )


def security(request):
    user = request.user
    form = SecurityForm(request.POST or None, instance=user)
    if request.method == "POST" and form.is_valid():
        try:
            services.do_update_security(
                user,
                actor=user,
                current_ip=client_ip(request),
                timeout=form.cleaned_data["session_timeout_minutes"],
                allowlist=form.cleaned_data["ip_allowlist"],
            )
            messages.success(request, "Security settings saved.")
            return redirect("account-security")
        except ValidationError as exc:
            form_errors_from(form, exc)
    if form.errors:
        user.refresh_from_db()  # the form wrote invalid values onto the instance
    ctx = {
        "form": form,
        "has_totp": AuthenticatorDevice.objects.filter(user=user, confirmed=True).exists(),
        "attempts": LoginAttempt.objects.filter(email=user.email)[:10],
    }
    return render(request, "accounts/security.html", ctx)


def tokens(request):
    form = TokenForm(request.POST or None)
    new_token = None
    if request.method == "POST" and form.is_valid():
        try:
            token, new_token = services.do_create_token(
                request.user, actor=request.user, data=form.cleaned_data
            )
            messages.success(request, f"Token “{token.name}” created. Copy it now.")
            form = TokenForm()
        except ValidationError as exc:
            form_errors_from(form, exc)
    ctx = {
        "form": form,
        "new_token": new_token,
        "tokens": restrict(ApiToken, request.user).filter(user=request.user),
    }
    return render(request, "accounts/tokens.html", ctx, status=400 if form.errors else 200)


@require_POST
def token_revoke(request, uuid):
    # Only your own tokens, even for administrators (they revoke others' in the admin).
    token = get_object_or_404(
        restrict(ApiToken, request.user, DELETE), uuid=uuid, user=request.user
    )
    services.do_revoke_token(token, actor=request.user)
    messages.success(request, f"Token “{token.name}” revoked.")
    return redirect("account-tokens")


class ActivityList(KeysetListMixin, PortalListView):
    model = AuditEntry
    template_name = "accounts/activity.html"
    partial_template_name = "accounts/partials/activity_table.html"
    paginate_by = 50


def two_factor_verify(request):
    user = request.user
    if user.is_verified():
        return redirect(_safe_next(request, "dashboard"))
    if not user_has_device(user, confirmed=True):
        return redirect("two_factor_setup")
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        device = match_token(user, form.cleaned_data["code"].strip().replace(" ", ""))
        if device is not None:
            otp_login(request, device)
            audit.record("2fa.verify", user, actor=user)
            return redirect(_safe_next(request, "dashboard"))
        form.add_error("code", "That code is not valid. Use a current code or a backup code.")
    return render(request, "accounts/2fa_verify.html", {"form": form})


def two_factor_setup(request):
    user = request.user
    if user_has_device(user, confirmed=True) and not user.is_verified():
        return redirect("two_factor_verify")
    device = AuthenticatorDevice.objects.filter(user=user, confirmed=False).first()
    if device is None or request.method == "GET":
        device = services.do_start_totp(user)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if services.do_confirm_totp(user, device, form.cleaned_data["code"]):
            otp_login(request, device)
            codes = services.do_generate_backup_codes(user, actor=user)
            messages.success(request, "Two-factor authentication is on.")
            return render(
                request,
                "accounts/2fa_backup_codes.html",
                {"codes": codes, "next": _safe_next(request, "dashboard")},
            )
        form.add_error("code", "That code does not match. Check your device's clock and retry.")
    svg = qrcode.make(device.config_url, image_factory=qrcode.image.svg.SvgPathImage)
    return render(
        request,
        "accounts/2fa_setup.html",
        {
            "form": form,
            "qr_svg": svg.to_string(encoding="unicode"),
            "secret": device.secret_b32,
        },
    )


@require_POST
def backup_codes(request):
    codes = services.do_generate_backup_codes(request.user, actor=request.user)
    return render(
        request,
        "accounts/2fa_backup_codes.html",
        {"codes": codes, "next": reverse("account-security")},
    )


@require_POST
def disable_2fa(request):
    try:
        services.do_disable_2fa(request.user, actor=request.user)
        messages.success(request, "Two-factor authentication is off.")
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect("account-security")
