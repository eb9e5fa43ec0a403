"""State changes of accounts. Each runs in one transaction and writes its audit entry."""

from __future__ import annotations

import secrets

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import tokens
from accounts.models import ApiToken, Role, User
from accounts.validators import ip_allowed, parse_cidrs
from core import audit

PROFILE_FIELDS = ["name", "company", "timezone", "avatar"]
SECURITY_FIELDS = ["session_timeout_minutes", "ip_allowlist"]
USER_FIELDS = ["email", "name", "role", "reseller", "company", "timezone", "is_active"]
BACKUP_CODE_COUNT = 10


def do_create_user(*, actor, email: str, role: str, reseller=None, password=None, **extra) -> User:
    """Create a user; resellers may only create customers of their own."""
    if actor.role == Role.RESELLER:
        if role != Role.CUSTOMER:
            raise ValidationError({"role": "Resellers can only create customers."})
        reseller = actor
    elif actor.role != Role.ADMIN:
        raise ValidationError("You may not create users.")
    with transaction.atomic():
        user = User.objects.create_user(email, password, role=role, reseller=reseller, **extra)
        if not password:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        audit.record(
            "user.create",
            user,
            actor=actor,
            changes=audit.diff({}, audit.snapshot(user, USER_FIELDS)),
        )
    return user


def do_update_user(user: User, *, actor, data: dict, fields=USER_FIELDS) -> User:
    # From the database: a bound ModelForm has already written new values onto ``user``.
    before = audit.snapshot(User.objects.get(pk=user.pk), fields)
    for name, value in data.items():
        setattr(user, name, value)
    user.full_clean(exclude=["password"])
    with transaction.atomic():
        user.save()
        changes = audit.diff(before, audit.snapshot(user, fields))
        if changes:
            audit.record("user.update", user, actor=actor, changes=changes)
    return user


def do_update_security(user: User, *, actor, current_ip: str, timeout, allowlist: str) -> User:
    """Refuses an allow-list that would shut out the very request that sets it."""
    networks = parse_cidrs(allowlist)
    if networks and not ip_allowed(current_ip, networks):
        raise ValidationError(
            {
                "ip_allowlist": f"Your current address {current_ip} is not in the list; "
                "saving it would lock you out."
            }
        )
    return do_update_user(
        user,
        actor=actor,
        data={"session_timeout_minutes": timeout, "ip_allowlist": allowlist.strip()},
        fields=SECURITY_FIELDS,
    )


def do_create_token(user: User, *, actor, name: str, scope: str, expires_at=None):
    """Returns (token, raw value). The raw value is shown once and never stored."""
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "The expiry must be in the future."})
    if scope not in ApiToken.Scope.values:
        raise ValidationError({"scope": "Scope must be read or write."})
    prefix, raw = tokens.new_token_parts()
    with transaction.atomic():
        token = ApiToken.objects.create(
            user=user,
            name=name,
            scope=scope,
            expires_at=expires_at,
            prefix=prefix,
            digest=tokens.digest(raw),
        )
        audit.record(
            "token.create",
            token,
            actor=actor,
            changes={"name": [None, name], "scope": [None, scope]},
        )
    return token, raw


def do_revoke_token(token: ApiToken, *, actor) -> ApiToken:
    if token.revoked_at:
        return token
    with transaction.atomic():
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit.record("token.revoke", token, actor=actor)
    return token


def do_start_totp(user: User) -> TOTPDevice:
    """A new unconfirmed authenticator; any earlier unconfirmed one is dropped."""
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    return TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)


def do_confirm_totp(user: User, device: TOTPDevice, code: str) -> bool:
    if not device.verify_token(code.strip().replace(" ", "")):
        return False
    with transaction.atomic():
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        audit.record("2fa.enrol", user, actor=user, changes={"totp": [False, True]})
    return True


def do_generate_backup_codes(user: User, *, actor) -> list[str]:
    # 14 characters: django-otp's StaticToken column holds at most 16.
    codes = ["-".join(secrets.token_hex(2) for _ in range(3)) for _ in range(BACKUP_CODE_COUNT)]
    with transaction.atomic():
        device, _ = StaticDevice.objects.get_or_create(user=user, name="Backup codes")
        device.confirmed = True
        device.save()
        device.token_set.all().delete()
        StaticToken.objects.bulk_create(StaticToken(device=device, token=c) for c in codes)
        audit.record("2fa.backup_codes", user, actor=actor)
    return codes


def do_disable_2fa(user: User, *, actor) -> None:
    if user.requires_second_factor:
        raise ValidationError("Staff accounts must keep two-factor authentication.")
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).delete()
        StaticDevice.objects.filter(user=user).delete()
        audit.record("2fa.disable", user, actor=actor, changes={"totp": [True, False]})


def do_update_profile(user: User, *, actor, data: dict) -> User:
    return do_update_user(user, actor=actor, data=data, fields=PROFILE_FIELDS)
