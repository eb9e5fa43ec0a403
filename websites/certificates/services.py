"""State changes of certificates: each writes its rows and audit entry in one transaction and
queues the Operation that does the work (websites/certificates/tasks.py)."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from core import audit
from core.operations import start_operation
from core.policy import CHANGE
from servers.engine import profile_for
from websites.certificates.dns01 import order_names, zones_for
from websites.certificates.models import Certificate
from websites.certificates.pem import check_upload, covers, load_chain
from websites.certificates.resolve import names_not_pointing

ISSUE_TASK = "websites.certificates.tasks.issue_certificate"
INSTALL_TASK = "websites.certificates.tasks.install_certificate"


def _start(cert: Certificate, kind: str, task: str, actor):
    site = cert.website
    return start_operation(
        kind=kind,
        task=task,
        owner=site.owner,
        requested_by=actor,
        target=cert,
        target_action=CHANGE,
        lock_key=site.server.lock_key,
        args={"certificate_id": cert.pk},
    )


def request_certificate(
    site, *, actor, key_type: str = "", challenge: str = "", wildcard: bool | None = None
):
    """Order (or renew) a certificate from the ACME directory for every name of ``site``:
    queues the Operation and returns it. The caller has checked ``actor`` may change the
    site. Call it after a site's first apply, once its vhost serves the challenge path.

    ``challenge`` (http-01 | dns-01) and ``wildcard`` (add ``*.DOMAIN``) are kept on the
    certificate for renewals; empty/None keep the stored choice. A wildcard is DNS-01 only,
    and DNS-01 needs every name in a zone the panel serves for the site's owner."""
    if key_type and key_type not in Certificate.KeyType.values:
        raise ValidationError({"key_type": f"Key types: {', '.join(Certificate.KeyType.values)}."})
    if challenge and challenge not in Certificate.Challenge.values:
        raise ValidationError(
            {"challenge": f"Challenges: {', '.join(Certificate.Challenge.values)}."}
        )
    current = Certificate.objects.filter(website=site).first()
    wildcard = bool(current and current.wildcard) if wildcard is None else bool(wildcard)
    challenge = challenge or (current.challenge if current else Certificate.Challenge.HTTP01)
    if wildcard:
        challenge = Certificate.Challenge.DNS01  # ACME validates wildcards by DNS only
    if challenge == Certificate.Challenge.DNS01:
        try:
            zones_for(order_names(site, wildcard), site.owner)
        except ValidationError as exc:
            words = " ".join(exc.messages)
            if wildcard:
                words = f"A wildcard certificate is validated by DNS-01 only. {words}"
            raise ValidationError({"wildcard" if wildcard else "challenge": words}) from exc
    with transaction.atomic():
        cert = _record_request(
            site, actor=actor, key_type=key_type, challenge=challenge, wildcard=wildcard
        )
        return _start(cert, "certificate.issue", ISSUE_TASK, actor)


FIELDS_AUDITED = ["source", "key_type", "domains", "challenge", "wildcard"]


def _record_request(
    site, *, actor, key_type: str = "", challenge: str = "", wildcard: bool = False
) -> Certificate:
    """The certificate row asked for and its audit entry (the caller holds a transaction)."""
    names = " ".join(order_names(site, wildcard))
    cert, created = Certificate.objects.select_for_update().get_or_create(
        website=site, defaults={"domains": names}
    )
    before = audit.snapshot(cert, FIELDS_AUDITED)
    cert.source = Certificate.Source.ACME
    cert.key_type = key_type or cert.key_type
    cert.challenge = challenge or cert.challenge
    cert.wildcard = wildcard
    cert.last_error = ""
    if not cert.fullchain:  # a live one keeps saying what it covers until replaced
        cert.domains = names
        cert.status = Certificate.Status.PENDING
    cert.updated_at = timezone.now()
    cert.save()
    changes = audit.diff(before, audit.snapshot(cert, FIELDS_AUDITED))
    audit.record(
        "certificate.request" if created or not cert.fullchain else "certificate.renew",
        cert,
        actor=actor,
        owner_id=site.owner_id,
        changes=changes,
    )
    return cert


def prepare_auto_certificate(site, *, actor) -> tuple[Certificate | None, str]:
    """At a site's apply (websites/tasks.py): the certificate row to issue now, or why not.

    Only for a site with no certificate yet, when ``PANEL_ACME_AUTO`` is on and every name
    already points at the server (ordering earlier would only fail at the ACME server)."""
    if not settings.PANEL_ACME_AUTO or site.suspended:
        return None, ""
    if Certificate.objects.filter(website=site).exists():
        return None, ""
    addresses = set(profile_for(site.server).public_addresses.split()) or {site.server.address}
    problems = names_not_pointing(site.names, addresses)
    if problems:
        return None, (
            "HTTPS not requested: " + "; ".join(problems) + ". Request a certificate on the "
            "site's TLS page once its DNS points at this server."
        )
    with transaction.atomic():
        return _record_request(site, actor=actor), ""


def uncovered_names(site, cert: Certificate | None) -> list[str]:
    """The site's names its certificate (the live chain's leaf) does not cover."""
    if cert is None or not cert.fullchain:
        return []
    try:
        leaf_names = load_chain(cert.fullchain).names
    except ValidationError:
        return []
    return [name for name in site.names if not covers(leaf_names, name)]


def reissue_for_new_names(site, *, actor):
    """After the site's aliases changed: an ACME certificate that does not cover every name
    is ordered again for all of them (the issue Operation, queued under the server's lock;
    it applies the site's vhost first so every new name serves the challenge). The old
    certificate stays live until the new one is installed. Uploaded certificates are the
    owner's to replace (the site page warns). Returns the Operation or None."""
    cert = Certificate.objects.filter(website=site, source=Certificate.Source.ACME).first()
    if cert is None or not uncovered_names(site, cert):
        return None
    return request_certificate(site, actor=actor)


def has_live_certificate(site) -> bool:
    """Its certificate's files are on the server, so the vhost serves HTTPS."""
    return Certificate.objects.filter(website=site, installed=True).exclude(fullchain="").exists()


def follow_tls_in_uptime_check(site) -> None:
    """The site's automatic uptime check asks https://DOMAIN/ while a certificate is live,
    http://DOMAIN/ otherwise (called after every apply of the site and every install)."""
    from monitoring.services import set_site_check_scheme

    set_site_check_scheme(site, "https" if has_live_certificate(site) else "http")


def do_upload_certificate(site, *, actor, private_key: str, certificate: str):
    """Store an uploaded key and chain (checked: they match, the chain is valid now and
    covers the site's domain) and queue the Operation that installs them."""
    if "\x00" in private_key or "\x00" in certificate:
        raise ValidationError("NUL characters are not allowed.")
    key, chain = check_upload(private_key, certificate, site.names)
    with transaction.atomic():
        cert, _created = Certificate.objects.select_for_update().get_or_create(
            website=site, defaults={"domains": ""}
        )
        cert.stash_live()  # put back if the server refuses the upload
        cert.source = Certificate.Source.UPLOAD
        cert.domains = " ".join(chain.names)
        cert.key_type = (
            Certificate.KeyType.RSA
            if "RSA" in type(chain.leaf.public_key()).__name__
            else Certificate.KeyType.ECDSA
        )
        cert.private_key = key
        cert.fullchain = chain.pem
        cert.fingerprint = chain.fingerprint
        cert.not_before, cert.not_after = chain.not_before, chain.not_after
        cert.status = Certificate.Status.PENDING
        cert.last_error = ""
        cert.updated_at = timezone.now()
        cert.save()
        audit.record(
            "certificate.upload",
            cert,
            actor=actor,
            owner_id=site.owner_id,
            changes={"fingerprint": [None, chain.fingerprint], "domains": [None, cert.domains]},
        )
        return _start(cert, "certificate.install", INSTALL_TASK, actor)
