"""Operation tasks for certificates: order from the ACME directory (HTTP-01 through the
site's challenge location, or DNS-01 through the panel's zones), install through the apply
engine, renew on a schedule."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from core.operations import WORKER_LOST, OperationContext, OperationError, on_worker_lost
from servers import connection
from servers.engine import ApplyError, profile_for, registry
from servers.engine.engine import Engine
from servers.engine.state import dirty, mark_dirty
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

CHAIN_FIELDS = ("private_key", "fullchain", "fingerprint", "not_before", "not_after", "domains")


def _was_live(cert: Certificate) -> bool:
    """Does the server serve a chain of this certificate (from before this operation)?"""
    return cert.installed and bool(cert.fullchain)


def _fail(cert: Certificate, message: str, *, live: bool) -> OperationError:
    """Record why; the certificate stays active only while a chain of it still serves
    (``live``): one stored but never installed is not "active"."""
    Certificate.objects.filter(pk=cert.pk).update(
        last_error=message[:4000],
        status=Certificate.Status.ACTIVE if live else Certificate.Status.FAILED,
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
    from servers.tasks import run_is_alive

    engine = Engine(
        server,
        t,
        ctx.log,
        run_id=ctx.op.uuid.hex,
        reconnect=lambda: connection.open_transport(server, reuse=False),
        run_is_alive=run_is_alive,  # a lock left by a dead or failed run is taken over
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
    from websites.certificates.services import follow_tls_in_uptime_check

    follow_tls_in_uptime_check(site)


def _load(certificate_id: int) -> Certificate:
    return Certificate.objects.select_related("website__server", "website__owner").get(
        pk=certificate_id
    )


def issue_certificate(ctx: OperationContext, certificate_id: int) -> str:
    cert = _load(certificate_id)
    live = _was_live(cert)
    previous = {name: getattr(cert, name) for name in CHAIN_FIELDS}
    site, server = cert.website, cert.website.server
    dns01 = cert.challenge == Certificate.Challenge.DNS01 or cert.wildcard
    names = order_names(site, cert.wildcard)
    if dns01:
        ctx.progress(5, f"Finding the zones of {', '.join(names)}")
        try:
            zones_for(names, site.owner)
        except ValidationError as exc:
            raise _fail(cert, "Not ordered: " + " ".join(exc.messages), live=live) from exc
    else:
        profile = profile_for(server)
        addresses = set(profile.public_addresses.split()) or {server.address}
        ctx.progress(5, f"Checking that {', '.join(names)} point at {', '.join(sorted(addresses))}")
        problems = names_not_pointing(names, addresses)
        if problems:
            raise _fail(cert, "Not ordered: " + "; ".join(problems) + ".", live=live)
    ctx.progress(15, f"Connecting to {server.address}")
    try:
        t = connection.open_transport(server)
    except TransportError as exc:
        raise _fail(cert, str(exc), live=live) from exc
    # A change of the site still waiting for its apply (new aliases) goes live first: every
    # name must answer the HTTP-01 challenge, whichever of the queued operations runs first.
    pending, _upto = dirty(server)
    if not dns01 and (pending is None or site.unit in pending):
        ctx.progress(20, "Applying the site's pending changes so every name is served")
        try:
            _apply(ctx, server, t, site.unit)
        except OperationError as exc:
            raise _fail(cert, str(exc), live=live) from exc
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
        raise _fail(cert, f"Not validated: {exc}", live=live) from exc
    except AcmeError as exc:
        raise _fail(cert, f"The ACME server refused: {exc}", live=live) from exc
    except TransportError as exc:
        raise _fail(cert, f"Publishing the challenge failed: {exc}", live=live) from exc
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
        if live:
            # The previous chain still serves (the engine kept or put back its files): the
            # row describes it again, so its expiry stays true and the renewal stays due.
            Certificate.objects.filter(pk=cert.pk).update(**previous)
            ctx.log("The previous certificate keeps serving.", "warning")
        raise _fail(cert, str(exc), live=live) from exc
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
    """An uploaded certificate: its files, then the site. When the server refuses it
    (nginx's OpenSSL may refuse what the panel's checks let through, e.g. a small RSA key)
    and another certificate was live, that one's files are written back and its values
    restored: the server never keeps files nginx refuses, which would fail every later
    apply there, and the row says what serves."""
    cert = _load(certificate_id)
    live = cert.installed  # an earlier chain's files serve until these replace them
    t = None
    try:
        t = connection.open_transport(cert.website.server)
        _install(ctx, cert, t)
    except (TransportError, OperationError) as exc:
        message = str(exc)
        if cert.replaced:
            message = _put_back(ctx, cert, t, message)
        raise _fail(cert, message, live=live) from exc
    Certificate.objects.filter(pk=cert.pk).update(replaced="")
    return f"Installed the certificate for {cert.domains}"


def _put_back(ctx: OperationContext, cert: Certificate, t, why: str) -> str:
    """Restore the certificate an upload replaced (row, then files); the error to show."""
    Certificate.objects.filter(pk=cert.pk).update(**cert.stashed(), replaced="")
    message = f"The uploaded certificate was not installed: {why}"
    if t is None:  # nothing was written: the server never saw the upload
        return f"{message} The previous certificate keeps serving."
    site = cert.website
    try:
        ctx.progress(95, "Putting the previous certificate back")
        _apply(ctx, site.server, t, cert.unit, also=(site.unit,))
    except (TransportError, OperationError) as again:
        mark_dirty(site.server, {cert.unit, site.unit})  # the next apply puts it back
        return f"{message} Putting the previous certificate back failed too: {again}"
    ctx.log("The previous certificate is back on the server and keeps serving.", "warning")
    return f"{message} The previous certificate keeps serving."


def _certificate_worker_lost(op, certificate_id: int, **_args) -> None:
    """The worker died mid-order or mid-install: what serves is what was live before (an
    upload's predecessor is restored and its files marked for the next apply)."""
    cert = Certificate.objects.filter(pk=certificate_id).select_related("website").first()
    if cert is None:
        return
    if cert.replaced:
        Certificate.objects.filter(pk=cert.pk).update(**cert.stashed(), replaced="")
        mark_dirty(cert.website.server, {cert.unit, cert.website.unit})
    _fail(cert, WORKER_LOST, live=_was_live(cert))


on_worker_lost(issue_certificate, _certificate_worker_lost)
on_worker_lost(install_certificate, _certificate_worker_lost)


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
