"""Second-factor devices whose secrets are useless to someone who reads the database.

django-otp's own TOTP and static devices keep the TOTP key and the backup codes in plain
text. These two devices plug into django-otp the same way (``match_token``,
``user_has_device``, ``otp_login`` find every Device subclass) but store the TOTP key
encrypted with the panel's keys and only a keyed digest of each backup code.
"""

from __future__ import annotations

import time
from base64 import b32encode
from binascii import unhexlify
from urllib.parse import quote, urlencode

from django.conf import settings
from django.db import models
from django.utils.crypto import constant_time_compare, salted_hmac
from django_otp.models import Device, ThrottlingMixin, TimestampMixin
from django_otp.oath import TOTP
from django_otp.util import random_hex

from core.fields import EncryptedTextField
from core.policy import RESET_2FA, Rules

# Nobody lists devices; administrators may only reset a user's second factor.
DEVICE_POLICY = Rules(
    owner="user", owner_may=frozenset(), support_may=frozenset(), admin_may=frozenset({RESET_2FA})
)
BACKUP_SALT = "accounts.backup-code"


def new_totp_key() -> str:
    return random_hex(20)


class _ThrottledDevice(TimestampMixin, ThrottlingMixin, Device):
    """Throttled verification: ``matches(token)`` says whether a token is right."""

    class Meta(Device.Meta):
        abstract = True

    def matches(self, token) -> bool:
        raise NotImplementedError

    def verify_token(self, token) -> bool:
        allowed, _ = self.verify_is_allowed()
        if not allowed:
            return False
        if self.matches(token):
            self.throttle_reset(commit=False)
            self.set_last_used_timestamp(commit=False)
            self.save()
            return True
        self.throttle_increment(commit=True)
        return False


class AuthenticatorDevice(_ThrottledDevice):
    """A TOTP authenticator app (RFC 6238, 30-second steps, 6 digits)."""

    key = EncryptedTextField(default=new_totp_key)
    step = 30
    t0 = 0
    digits = 6
    tolerance = 1
    drift = models.SmallIntegerField(default=0)
    last_t = models.BigIntegerField(default=-1)

    policy = DEVICE_POLICY

    class Meta(Device.Meta):
        verbose_name = "authenticator app"

    @property
    def bin_key(self) -> bytes:
        return unhexlify(self.key.encode())

    def get_throttle_factor(self) -> int:
        return getattr(settings, "OTP_TOTP_THROTTLE_FACTOR", 1)

    def matches(self, token) -> bool:
        try:
            code = int(str(token))
        except ValueError:
            return False
        totp = TOTP(self.bin_key, self.step, self.t0, self.digits, self.drift)
        totp.time = time.time()
        # last_t + 1: a code that passed once never passes again.
        if totp.verify(code, self.tolerance, self.last_t + 1):
            self.last_t, self.drift = totp.t(), totp.drift
            return True
        return False

    @property
    def config_url(self) -> str:
        """The otpauth:// URL an authenticator app scans (shown once, at enrolment)."""
        issuer = settings.OTP_TOTP_ISSUER.replace(":", "")
        label = quote(f"{issuer}:{self.user.get_username()}")
        params = urlencode(
            {
                "secret": b32encode(self.bin_key).decode().rstrip("="),
                "algorithm": "SHA1",
                "digits": self.digits,
                "period": self.step,
                "issuer": issuer,
            },
            quote_via=quote,
        )
        return f"otpauth://totp/{label}?{params}"

    @property
    def secret_b32(self) -> str:
        return b32encode(self.bin_key).decode().rstrip("=")


def backup_code_digest(code: str, secret: str | None = None) -> str:
    """Keyed with SECRET_KEY: a stolen database alone does not allow guessing codes offline."""
    normalised = code.strip().replace(" ", "").lower()
    kwargs = {"secret": secret} if secret else {}
    return salted_hmac(BACKUP_SALT, normalised, algorithm="sha256", **kwargs).hexdigest()


class BackupCodeDevice(_ThrottledDevice):
    """Ten single-use codes for when the authenticator is lost."""

    policy = DEVICE_POLICY

    class Meta(Device.Meta):
        verbose_name = "backup codes"

    def get_throttle_factor(self) -> int:
        return getattr(settings, "OTP_STATIC_THROTTLE_FACTOR", 1)

    def matches(self, token) -> bool:
        secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
        digests = {backup_code_digest(str(token), s) for s in secrets}
        for stored in self.codes.all():
            if any(constant_time_compare(stored.digest, d) for d in digests):
                stored.delete()  # single use
                return True
        return False


class BackupCode(models.Model):
    device = models.ForeignKey(BackupCodeDevice, on_delete=models.CASCADE, related_name="codes")
    digest = models.CharField(max_length=64)

    policy = DEVICE_POLICY

    def __str__(self) -> str:
        return f"backup code of {self.device.user}"


def has_confirmed_device(user) -> bool:
    """django-otp's ``user_has_device(user, confirmed=True)`` in one query: it asks each
    device model in turn, two queries on every request of a user without a second factor."""
    from django_otp import device_classes

    if user.is_anonymous:
        return False
    found = [
        model.objects.devices_for_user(user, confirmed=True).order_by().values("pk")
        for model in device_classes()
    ]
    return found[0].union(*found[1:], all=True).exists()
