"""State changes of accounts. Each runs in one transaction and writes its audit entry."""

from __future__ import annotations

import secrets

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from accounts import tokens
from accounts.devices import (
    AuthenticatorDevice,
    BackupCode,
    BackupCodeDevice,
    backup_code_digest,
)
from accounts.models import ApiToken, LoginAttempt, Role, User
from accounts.validators import ip_allowed, parse_cidrs
from core import audit
from core.policy import ADMIN, role_of
from core.services import accept_only, refuse_nul_in

PROFILE_FIELDS = ["name", "company", "timezone", "avatar"]
SECURITY_FIELDS = ["session_timeout_minutes", "ip_allowlist"]
# Written when a user is created; email changes afterwards only through a verified address
# (allauth's email page), never by writing the field.
USER_CREATE_FIELDS = ["email", "name", "role", "reseller", "company", "timezone", "is_active"]
USER_FIELDS = ["name", "role", "reseller", "company", "timezone", "is_active"]
ADMIN_ONLY_USER_FIELDS = {"role", "reseller"}
TOKEN_FIELDS = ["name", "scope", "expires_at"]
BACKUP_CODE_COUNT = 10


def do_create_user(*, actor, data: dict, password: str | None = None) -> User:
    """Create a user; resellers may only create customers of their own."""
    accept_only(data, USER_CREATE_FIELDS)
    data = {"role": Role.CUSTOMER, **data}
    if actor is not None and role_of(actor) not in User.policy.add:
        raise PermissionDenied("You may not create users.")
    if role_of(actor) == Role.RESELLER:
        if data["role"] != Role.CUSTOMER:
            raise ValidationError({"role": "Resellers can only create customers."})
        data["reseller"] = actor
    email = data.pop("email", "") or ""
    if not email:
        raise ValidationError({"email": "An email address is required."})
    refuse_nul_in({"email": email, **data}, ["email", *data])
    with transaction.atomic():
        user = User.objects.create_user(email, password, **data)
        if not password:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        audit.record(
            "user.create",
            user,
            actor=actor,
            changes=audit.diff({}, audit.snapshot(user, USER_CREATE_FIELDS)),
        )
    return user


def do_update_user(user: User, *, actor, data: dict, fields=USER_FIELDS) -> User:
    accept_only(data, fields)
    # From the database: a bound ModelForm has already written new values onto ``user``.
    stored = User.objects.get(pk=user.pk)
    before = audit.snapshot(stored, fields)
    if actor is not None and role_of(actor) != ADMIN:
        for name in ADMIN_ONLY_USER_FIELDS & set(data):
            if data[name] != getattr(stored, name):
                raise ValidationError({name: "Only administrators may change this."})
    if actor is not None and actor.pk == user.pk and data.get("is_active") is False:
        raise ValidationError({"is_active": "You cannot deactivate yourself."})
    for name, value in data.items():
        setattr(user, name, value)
    refuse_nul_in(user, fields)
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


def do_create_token(user: User, *, actor, data: dict, via: ApiToken | None = None):
    """Returns (token, raw value). The raw value is shown once and never stored.

    ``via`` is the token the request came with, if any: a token cannot mint one with more
    scope or a longer life than itself (else a leaked token could outlive its revocation).
    """
    accept_only(data, TOKEN_FIELDS)
    name = data.get("name") or ""
    scope = data.get("scope") or ApiToken.Scope.READ
    expires_at = data.get("expires_at")
    if not name:
        raise ValidationError({"name": "Give the token a name."})
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "The expiry must be in the future."})
    if scope not in ApiToken.Scope.values:
        raise ValidationError({"scope": "Scope must be read or write."})
    if via is not None:
        if via.scope == ApiToken.Scope.READ and scope != ApiToken.Scope.READ:
            raise ValidationError({"scope": "A read-only token cannot create a write token."})
        if via.expires_at is not None and (expires_at is None or expires_at > via.expires_at):
            raise ValidationError(
                {"expires_at": "A token cannot create one that expires after it does."}
            )
    refuse_nul_in(data, ["name"])
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


def do_delete_token(token: ApiToken, *, actor) -> None:
    """Delete a token; its webhooks go with it, each audited (hooks' pre_delete receiver)."""
    with transaction.atomic():
        token._deleted_by = actor  # read by hooks.services.audit_token_webhooks
        audit.record("token.delete", token, actor=actor)
        token.delete()


def do_start_totp(user: User) -> AuthenticatorDevice:
    """A new unconfirmed authenticator; any earlier unconfirmed one is dropped."""
    AuthenticatorDevice.objects.filter(user=user, confirmed=False).delete()
    return AuthenticatorDevice.objects.create(user=user, name="Authenticator app", confirmed=False)


def do_confirm_totp(user: User, device: AuthenticatorDevice, code: str) -> bool:
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
        device, _ = BackupCodeDevice.objects.get_or_create(user=user, name="Backup codes")
        device.confirmed = True
        device.save()
        device.codes.all().delete()
        BackupCode.objects.bulk_create(
            BackupCode(device=device, digest=backup_code_digest(c)) for c in codes
        )
        audit.record("2fa.backup_codes", user, actor=actor)
    return codes


def _remove_devices(user: User) -> None:
    AuthenticatorDevice.objects.filter(user=user).delete()
    BackupCodeDevice.objects.filter(user=user).delete()


def do_disable_2fa(user: User, *, actor) -> None:
    if user.requires_second_factor:
        raise ValidationError("Staff accounts must keep two-factor authentication.")
    with transaction.atomic():
        _remove_devices(user)
        audit.record("2fa.disable", user, actor=actor, changes={"totp": [True, False]})


def do_reset_2fa(user: User, *, actor) -> None:
    """An administrator removes a user's devices (lost phone); the user enrols again."""
    if role_of(actor) != ADMIN:
        raise PermissionDenied("Only administrators reset two-factor authentication.")
    with transaction.atomic():
        _remove_devices(user)
        audit.record("2fa.reset", user, actor=actor, changes={"totp": [True, False]})


def do_lift_lockout(attempts, *, actor) -> int:
    """Failed sign-ins stop counting (they stay on record); returns how many were lifted."""
    with transaction.atomic():
        rows = list(attempts.filter(success=False, lifted_at__isnull=True))
        LoginAttempt.objects.filter(pk__in=[a.pk for a in rows]).update(lifted_at=timezone.now())
        for email in sorted({a.email for a in rows}):
            audit.record(
                "login.lift_lockout",
                actor=actor,
                object_type="accounts.loginattempt",
                object_label=email,
                changes={"failures": [sum(a.email == email for a in rows), 0]},
            )
    return len(rows)


def do_set_password(user: User, *, actor, password: str, via: str) -> None:
    """Every password change that does not come through allauth (admin form, commands)."""
    with transaction.atomic():
        user.set_password(password)
        user.save(update_fields=["password"])
        audit.record("user.password_set", user, actor=actor, changes={"via": [None, via]})


def do_update_profile(user: User, *, actor, data: dict) -> User:
    return do_update_user(user, actor=actor, data=data, fields=PROFILE_FIELDS)
