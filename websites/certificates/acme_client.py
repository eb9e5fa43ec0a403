"""The adapter to an ACME server (Let's Encrypt, its staging, Pebble in tests), with the
``acme`` library. One error type, ``AcmeError``, carrying the ACME server's own words."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import josepy as jose
import requests
from acme import challenges, client, crypto_util, errors, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

USER_AGENT = "unified-hosting-panel"
HTTP01, DNS01 = "http-01", "dns-01"


@dataclass(frozen=True)
class Challenge:
    """One name's challenge: ``name`` as the ACME server identifies it (``example.com``
    also for ``*.example.com``, whose ``label`` keeps the star), the HTTP-01 ``token``, the
    ``validation`` to serve (HTTP-01 file content, DNS-01 TXT text) and the TXT's name."""

    name: str
    label: str
    token: str
    validation: str
    dns_name: str


class AcmeError(Exception):
    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


def new_account_key() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _describe(exc: BaseException) -> str:
    """The ACME server's problem text (RFC 8555 problem documents), else the error."""
    if isinstance(exc, messages.Error):
        return exc.detail or exc.description or str(exc)
    if isinstance(exc, errors.ValidationError):
        found = []
        for authz in exc.failed_authzrs:
            for chall in authz.body.challenges:
                if chall.error is not None:
                    found.append(f"{authz.body.identifier.value}: {_describe(chall.error)}")
        return "; ".join(found) or "validation failed"
    return str(exc) or exc.__class__.__name__


class AcmeClient:
    def __init__(
        self, directory: str, account_key_pem: str, *, verify: bool | str = True, timeout: int = 30
    ) -> None:
        key = serialization.load_pem_private_key(account_key_pem.encode(), password=None)
        self.jwk = jose.JWKEC(key=key)
        self.net = client.ClientNetwork(
            self.jwk, alg=jose.ES256, verify_ssl=verify, user_agent=USER_AGENT, timeout=timeout
        )
        try:
            self.directory = client.ClientV2.get_directory(directory, self.net)
        except (requests.RequestException, messages.Error, errors.Error, ValueError) as exc:
            raise AcmeError(
                f"The ACME directory {directory} did not answer: {_describe(exc)}", retryable=True
            ) from exc
        self.acme = client.ClientV2(self.directory, self.net)

    def register(self, email: str = "", uri: str = "") -> str:
        """The account's URI: the stored one, else a new (or the existing) registration."""
        if uri:
            self.net.account = messages.RegistrationResource(body=messages.Registration(), uri=uri)
            return uri
        reg = messages.NewRegistration.from_data(email=email or None, terms_of_service_agreed=True)
        try:
            regr = self.acme.new_account(reg)
        except errors.ConflictError as exc:  # the key has an account already
            self.net.account = messages.RegistrationResource(
                body=messages.Registration(), uri=exc.location
            )
            return exc.location
        except (requests.RequestException, messages.Error, errors.Error) as exc:
            raise AcmeError(f"Registering the ACME account failed: {_describe(exc)}") from exc
        return regr.uri

    def issue(
        self,
        domains: list[str],
        key_pem: str,
        *,
        publish: Callable[[list[Challenge]], None],
        unpublish: Callable[[list[Challenge]], None],
        kind: str = HTTP01,
        log: Callable[[str], None] = lambda m: None,
        timeout: float = 90,
    ) -> str:
        """Order a certificate for ``domains`` with the given key, answering the challenges
        of ``kind`` (``http-01``: a file at /.well-known/acme-challenge/TOKEN; ``dns-01``: a
        TXT record at _acme-challenge.NAME). ``publish`` gets every challenge of the order
        at once and returns when they are in place; ``unpublish`` gets them back afterwards,
        on failure too. Returns the full chain (PEM)."""
        wanted = challenges.DNS01 if kind == DNS01 else challenges.HTTP01
        csr = crypto_util.make_csr(key_pem.encode(), domains)
        pending: list[tuple[Challenge, messages.ChallengeBody]] = []
        published = False
        try:
            order = self.acme.new_order(csr)
            for authz in order.authorizations:
                name = authz.body.identifier.value
                label = f"*.{name}" if authz.body.wildcard else name
                if authz.body.status == messages.STATUS_VALID:
                    log(f"{label}: already validated")
                    continue
                chall = next(
                    (c for c in authz.body.challenges if isinstance(c.chall, wanted)), None
                )
                if chall is None:
                    raise AcmeError(f"{label}: the ACME server offers no {kind} challenge")
                if kind == DNS01:
                    validation = chall.chall.validation(self.jwk)
                else:
                    _response, validation = chall.response_and_validation(self.jwk)
                pending.append(
                    (
                        Challenge(
                            name=name,
                            label=label,
                            token=chall.chall.encode("token"),
                            validation=validation,
                            dns_name=f"_acme-challenge.{name}",
                        ),
                        chall,
                    )
                )
            if pending:
                published = True
                publish([c for c, _body in pending])
            for item, chall in pending:
                self.acme.answer_challenge(chall, chall.response(self.jwk))
                log(f"{item.label}: {kind} challenge answered")
            deadline = dt.datetime.now() + dt.timedelta(seconds=timeout)
            order = self.acme.poll_and_finalize(order, deadline)
        except AcmeError:
            raise
        except errors.TimeoutError as exc:
            raise AcmeError("The ACME server did not finish in time.", retryable=True) from exc
        except requests.RequestException as exc:
            raise AcmeError(f"The ACME server did not answer: {exc}", retryable=True) from exc
        except (messages.Error, errors.Error) as exc:
            raise AcmeError(_describe(exc)) from exc
        finally:
            if published:
                try:
                    unpublish([c for c, _body in pending])
                except Exception as exc:  # noqa: BLE001 - the order's outcome matters more
                    log(f"Could not remove every challenge response: {exc}")
        return order.fullchain_pem
