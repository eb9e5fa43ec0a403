"""Operation tasks for certificates: order from the ACME directory (HTTP-01 through the
site's challenge location, or DNS-01 through the panel's zones), install through the apply
engine, renew on a schedule."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from core.operations import OperationContext, OperationError
from servers import connection
from servers.engine import ApplyError, profile_for, registry
from servers.engine.engine import Engine
from servers.transport import TransportError
from websites.certificates.acme_client import (
    DNS01,
    HTTP01,
    AcmeClient,
    AcmeError,
    Challenge,
    new_account_key,
)
from websites.certificates.dns01 import ChallengeNotServed, DnsResponder, order_names, zones_for
from websites.certificates.models import AcmeAccount, Certificate
from websites.certificates.pem import load_chain, new_key
from websites.certificates.resolve import names_not_pointing
from websites.default_server import UNIT as DEFAULT_UNIT


def _fail(cert: Certificate, message: str) -> OperationError:
    Certificate.objects.filter(pk=cert.pk).update(
        last_error=message[:4000],
        status=Certificate.Status.ACTIVE if cert.fullchain else Certificate.Status.FAILED,
        updated_at=timezone.now(),
    )
    return OperationError(message)


def acme_client() -> AcmeClient:
    """The panel's account at the configured directory (created on first use)."""
    directory = settings.PANEL_ACME_DIRECTORY
    with transaction.atomic():
        account, _ = AcmeAccount.objects.select_for_update().get_or_create(
            directory=directory,
            defaults={"private_key": new_account_key(), "email": settings.PANEL_ACME_EMAIL},
        )
        client = AcmeClient(directory, account.private_key, verify=settings.PANEL_ACME_CA_BUNDLE)
        if not account.uri:
            account.uri = client.register(account.email)
            account.save(update_fields=["uri"])
        else:
            client.register(uri=account.uri)
    return client


def _apply(ctx: OperationContext, server, t, unit: str, also: tuple[str, ...] = ()) -> None:
    engine = Engine(
        server,
        t,
        ctx.log,
        run_id=ctx.op.uuid.hex,
        reconnect=lambda: connection.open_transport(server, reuse=False),
    )
    try:
        result = engine.apply({unit, *also})
    except (ApplyError, TransportError) as exc:
        raise OperationError(f"Applying {unit} failed: {exc}") from exc
    with transaction.atomic():
        registry.report(server, result.ok_units, result.failed_units)
    if unit in result.failed_units:
        raise OperationError(f"Applying {unit} failed: {result.failed_units[unit]}")


def _install(ctx: OperationContext, cert: Certificate, t) -> None:
    site = cert.website
    ctx.progress(75, "Writing the key (0600) and the chain on the server")
    _apply(ctx, site.server, t, cert.unit)
    ctx.progress(90, "Serving HTTPS")
    # The catch-all starts refusing unknown TLS names once the server serves HTTPS.
    _apply(ctx, site.server, t, site.unit, also=(DEFAULT_UNIT,))
    Certificate.objects.filter(pk=cert.pk).update(
        status=Certificate.Status.ACTIVE, last_error="", updated_at=timezone.now()
    )


def _load(certificate_id: int) -> Certificate:
    return Certificate.objects.select_related("website__server", "website__owner").get(
        pk=certificate_id
    )


def issue_certificate(ctx: OperationContext, certificate_id: int) -> str:
    cert = _load(certificate_id)
    site, server = cert.website, cert.website.server
    dns01 = cert.challenge == Certificate.Challenge.DNS01 or cert.wildcard
    names = order_names(site, cert.wildcard)
    if dns01:
        ctx.progress(5, f"Finding the zones of {', '.join(names)}")
        try:
            zones_for(names, site.owner)
        except ValidationError as exc:
            raise _fail(cert, "Not ordered: " + " ".join(exc.messages)) from exc
    else:
        profile = profile_for(server)
        addresses = set(profile.public_addresses.split()) or {server.address}
        ctx.progress(5, f"Checking that {', '.join(names)} point at {', '.join(sorted(addresses))}")
        problems = names_not_pointing(names, addresses)
        if problems:
            raise _fail(cert, "Not ordered: " + "; ".join(problems) + ".")
    ctx.progress(15, f"Connecting to {server.address}")
    try:
        t = connection.open_transport(server)
    except TransportError as exc:
        raise _fail(cert, str(exc)) from exc
    try:
        ctx.progress(25, f"Ordering from {settings.PANEL_ACME_DIRECTORY}")
        client = acme_client()
        key = new_key(cert.key_type)
        if dns01:
            responder = DnsResponder(
                site.owner,
                actor=ctx.op.requested_by,
                wait=settings.PANEL_ACME_DNS_WAIT,
                log=ctx.log,
            )
            publish, unpublish, kind = responder.publish, responder.unpublish, DNS01
        else:
            publish, unpublish = _http_responder(ctx, t, profile.acme_challenge_dir.rstrip("/"))
            kind = HTTP01
        fullchain = client.issue(
            names,
            key,
            kind=kind,
            publish=publish,
            unpublish=unpublish,
            log=ctx.log,
            timeout=settings.PANEL_ACME_TIMEOUT,
        )
    except ChallengeNotServed as exc:
        raise _fail(cert, f"Not validated: {exc}") from exc
    except AcmeError as exc:
        raise _fail(cert, f"The ACME server refused: {exc}") from exc
    except TransportError as exc:
        raise _fail(cert, f"Publishing the challenge failed: {exc}") from exc
    chain = load_chain(fullchain)
    ctx.log(f"Issued: valid until {chain.not_after:%Y-%m-%d %H:%M} UTC")
    Certificate.objects.filter(pk=cert.pk).update(
        domains=" ".join(names),
        private_key=key,  # the field encrypts it
        fullchain=chain.pem,
        fingerprint=chain.fingerprint,
        not_before=chain.not_before,
        not_after=chain.not_after,
        updated_at=timezone.now(),
    )
    cert = _load(certificate_id)
    try:
        _install(ctx, cert, t)
    except OperationError as exc:
        raise _fail(cert, str(exc)) from exc
    return f"Certificate for {', '.join(names)} valid until {chain.not_after:%Y-%m-%d}"


def _http_responder(ctx: OperationContext, t, challenge_dir: str):
    """HTTP-01: token files in the directory every vhost serves at
    /.well-known/acme-challenge/, written over the server's transport."""

    def publish(items: list[Challenge]) -> None:
        t.makedirs(challenge_dir)
        for c in items:
            t.write_file(f"{challenge_dir}/{c.token}", c.validation.encode(), mode=0o644)

    def unpublish(items: list[Challenge]) -> None:
        for c in items:
            try:
                t.remove(f"{challenge_dir}/{c.token}")
            except TransportError:  # a leftover token file is harmless
                ctx.log(f"Could not remove the challenge file {c.token}")

    return publish, unpublish


def install_certificate(ctx: OperationContext, certificate_id: int) -> str:
    """An uploaded certificate: its files, then the site."""
    cert = _load(certificate_id)
    try:
        t = connection.open_transport(cert.website.server)
        _install(ctx, cert, t)
    except TransportError as exc:
        raise _fail(cert, str(exc)) from exc
    except OperationError as exc:
        raise _fail(cert, str(exc)) from exc
    return f"Installed the certificate for {cert.domains}"


def due_for_renewal():
    limit = timezone.now() + dt.timedelta(days=settings.PANEL_ACME_RENEW_DAYS)
    return Certificate.objects.filter(
        source=Certificate.Source.ACME, not_after__lt=limit
    ).select_related("website__server", "website__owner")


def renew_due() -> int:
    """Scheduled (daily): queue a renewal for every ACME certificate expiring within
    PANEL_ACME_RENEW_DAYS days."""
    from websites.certificates.services import request_certificate

    count = 0
    for cert in due_for_renewal():
        request_certificate(cert.website, actor=None)
        count += 1
    return count
