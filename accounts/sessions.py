"""Checks shared by code that authenticates outside the HTTP middleware (websockets)."""

from __future__ import annotations

from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.models import Device

from accounts.devices import has_confirmed_device
from accounts.validators import ip_allowed


def second_factor_passed(user, session) -> bool:
    """True when the user needs no second factor or the session has passed one."""
    if getattr(user, "otp_device", None) is not None:
        # An HTTP request's user: OTPMiddleware found this session's device, and that it is
        # the user's, already (the API's session authentication asked again, two queries).
        return True
    needs = user.requires_second_factor or has_confirmed_device(user)
    if not needs:
        return True
    device = Device.from_persistent_id(session.get(DEVICE_ID_SESSION_KEY) or "")
    return device is not None and device.user_id == user.pk


def may_connect(user, session, ip: str | None) -> bool:
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    networks = user.allowed_networks()
    if networks and not (ip and ip_allowed(ip, networks)):
        return False
    return second_factor_passed(user, session)
