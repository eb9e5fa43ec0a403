"""State changes of mail. Each validates, writes its rows and its audit entry in one
transaction, and starts the apply of the server's mail units (Postfix maps, the domain's
Dovecot users) as an Operation, so the server follows."""

from __future__ import annotations

import datetime
import re

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core import audit
from core.policy import ADMIN, CHANGE, CUSTOMER, RESELLER, may, role_of
from core.services import accept_only, refuse_nul_in
from core.validators import validate_multiline_text, validate_plain_text
from mail import passwords
from mail.models import MAPS_UNIT, MailAlias, Mailbox, MailDomain, Status
from mail.validators import (
    clean_destinations,
    clean_local_part,
    clean_mail_domain,
    clean_spam_list,
)

DOMAIN_FIELDS = ["domain", "server", "owner"]
DOMAIN_UPDATE_FIELDS = ["suspended", "catch_all", "spam_allow", "spam_deny"]
MAILBOX_FIELDS = ["domain", "local_part", "quota_mb"]
MAILBOX_UPDATE_FIELDS = [
    "quota_mb",
    "suspended",
    "send_limit_per_hour",
    "autoreply",
    "autoreply_subject",
    "autoreply_body",
    "autoreply_start",
    "autoreply_end",
]
MAILBOX_SECRETS = ["password"]
ALIAS_FIELDS = ["domain", "local_part", "destinations"]
ALIAS_UPDATE_FIELDS = ["destinations"]


def owners_for(actor):
    """Who ``actor`` may make mail domains for: itself, a reseller's customers, anyone."""
    User = get_user_model()
    role = role_of(actor)
    if role == ADMIN:
        return User.objects.filter(is_active=True, role__in=[ADMIN, RESELLER, CUSTOMER])
    if role == RESELLER:
        return User.objects.filter(Q(pk=actor.pk) | Q(reseller=actor), is_active=True)
    return User.objects.filter(pk=actor.pk)


def mail_servers(owner):
    """Servers ``owner``'s mail may live on: the same as its websites'."""
    from websites.services import hosting_servers

    return hosting_servers(owner)


def apply_mail(domain: MailDomain, *, actor, units: set[str] | None = None):
    """Start the apply of ``domain``'s units (its Dovecot users and the server's maps)."""
    from servers.services import start_apply

    return start_apply(domain.server, actor=actor, units=units or {domain.unit, MAPS_UNIT})


def _claimed_elsewhere(domain: str, owner) -> str:
    """Why ``owner`` may not receive mail for ``domain`` ("" when it may): a zone or a
    website of that name belongs to someone else."""
    from dns.models import Zone
    from websites.models import Website

    labels = domain.split(".")
    enclosing = [".".join(labels[i:]) for i in range(len(labels) - 1)]
    zone = (
        Zone.objects.filter(name__in=enclosing)
        .only("name", "owner_id")
        .order_by("-name")  # any enclosing zone of another owner refuses
        .exclude(owner=owner)
        .first()
    )
    if zone is not None:
        return "This domain is in a DNS zone of another account."
    if Website.objects.filter(domain=domain).exclude(owner=owner).exists():
        return "This domain is a website of another account."
    return ""


# ---------------------------------------------------------------------------- domains


def do_create_mail_domain(*, actor, data: dict) -> MailDomain:
    accept_only(data, DOMAIN_FIELDS)
    data = dict(data)
    refuse_nul_in(data, ["domain"])
    owner = data.pop("owner", None) or actor
    if actor is not None and not owners_for(actor).filter(pk=owner.pk).exists():
        raise ValidationError({"owner": "You cannot make mail domains for this user."})
    try:
        name = clean_mail_domain(data.get("domain"))
    except ValidationError as exc:
        raise ValidationError({"domain": exc.messages}) from exc
    server = data.get("server")
    if server is None or not mail_servers(owner).filter(pk=server.pk).exists():
        raise ValidationError({"server": "Choose one of your provider's servers."})
    if MailDomain.objects.filter(domain=name).exists():
        raise ValidationError({"domain": "This domain receives mail here already."})
    problem = _claimed_elsewhere(name, owner)
    if problem:
        raise ValidationError({"domain": problem})
    from mail import dkim

    private, public = dkim.generate(name)
    domain = MailDomain(
        owner=owner, server=server, domain=name, dkim_private_key=private, dkim_public_key=public
    )
    domain.full_clean()
    with transaction.atomic():
        domain.save()
        audit.record(
            "mail_domain.create",
            domain,
            actor=actor,
            changes=audit.diff({}, audit.snapshot(domain, DOMAIN_FIELDS)),
        )
        apply_mail(domain, actor=actor)
        from mail.dnsrecords import do_publish_records

        do_publish_records(domain, actor=actor)
    return domain


def _catch_all(value) -> str:
    """One address (here or elsewhere), or "" for none."""
    if value in (None, ""):
        return ""
    if not isinstance(value, str):
        raise ValidationError({"catch_all": "One e-mail address, or empty."})
    refuse_nul_in({"catch_all": value}, ["catch_all"])
    try:
        address = clean_destinations([value])
    except ValidationError as exc:
        raise ValidationError({"catch_all": exc.messages}) from exc
    return address


def do_update_mail_domain(domain: MailDomain, *, actor, data: dict) -> MailDomain:
    accept_only(data, DOMAIN_UPDATE_FIELDS)
    before = audit.snapshot(domain, DOMAIN_UPDATE_FIELDS)
    if "suspended" in data:
        if not isinstance(data["suspended"], bool):
            raise ValidationError({"suspended": "true or false."})
        domain.suspended = data["suspended"]
    if "catch_all" in data:
        domain.catch_all = _catch_all(data["catch_all"])
    for name in ("spam_allow", "spam_deny"):
        if name in data:
            refuse_nul_in(data, [name])
            try:
                setattr(domain, name, clean_spam_list(data[name]))
            except ValidationError as exc:
                raise ValidationError({name: exc.messages}) from exc
    changes = audit.diff(before, audit.snapshot(domain, DOMAIN_UPDATE_FIELDS))
    if not changes:
        return domain
    with transaction.atomic():
        domain.status = Status.PENDING
        domain.save(update_fields=["suspended", "catch_all", "spam_allow", "spam_deny", "status"])
        audit.record("mail_domain.update", domain, actor=actor, changes=changes)
        apply_mail(domain, actor=actor)
    return domain


def do_delete_mail_domain(domain: MailDomain, *, actor) -> None:
    """Removes the rows; the apply removes the domain's users file and map lines (the
    maildirs stay on the server, for the provider to archive)."""
    server = domain.server
    units = {domain.unit, MAPS_UNIT}
    with transaction.atomic():
        audit.record("mail_domain.delete", domain, actor=actor)
        domain.delete()
        from servers.services import start_apply

        start_apply(server, actor=actor, units=units)


# --------------------------------------------------------------------------- mailboxes


def _domain_for(actor, value) -> MailDomain:
    if not isinstance(value, MailDomain):
        raise ValidationError({"domain": "Choose one of your mail domains."})
    if actor is not None and not may(actor, CHANGE, value):
        raise ValidationError({"domain": "Choose one of your mail domains."})
    return value


def _local_part(domain: MailDomain, value) -> str:
    try:
        local = clean_local_part(value)
    except ValidationError as exc:
        raise ValidationError({"local_part": exc.messages}) from exc
    for other in (Mailbox, MailAlias):
        if other.objects.filter(domain=domain, local_part=local).exists():
            what = "a mailbox" if other is Mailbox else "an alias"
            raise ValidationError({"local_part": f"{local}@{domain.domain} is {what} already."})
    return local


def do_create_mailbox(*, actor, data: dict) -> Mailbox:
    accept_only(data, MAILBOX_FIELDS + MAILBOX_SECRETS)
    data = dict(data)
    refuse_nul_in(data, ["local_part"])
    domain = _domain_for(actor, data.get("domain"))
    local = _local_part(domain, data.get("local_part"))
    try:
        hashed = passwords.hash_password(data.get("password"))
    except ValidationError as exc:
        raise ValidationError({"password": exc.messages}) from exc
    from websites.plans import enforce_limit

    enforce_limit(domain.owner, "mailboxes", actor=actor)
    box = Mailbox(domain=domain, local_part=local, password_hash=hashed)
    if data.get("quota_mb") is not None:
        box.quota_mb = data["quota_mb"]
    box.full_clean()
    with transaction.atomic():
        box.save()
        audit.record(
            "mailbox.create",
            box,
            actor=actor,
            owner_id=domain.owner_id,
            changes=audit.diff({}, audit.snapshot(box, ["local_part", "quota_mb"])),
        )
        apply_mail(domain, actor=actor)
    return box


def may_set_send_limit(actor, box: Mailbox) -> bool:
    """The sending limit guards the provider's servers from a customer's mailbox: only an
    administrator or the owner's reseller (or a reseller for its own mailboxes) sets it."""
    role = role_of(actor)
    if role != RESELLER:
        return role == ADMIN
    owner = box.domain.owner
    return actor.pk in (owner.pk, owner.reseller_id)


def _date_or_none(value, name: str) -> datetime.date | None:
    """A day (a date, or ``YYYY-MM-DD``) or nothing (None, empty)."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime.datetime):
        raise ValidationError({name: "A day, without a time."})
    if isinstance(value, datetime.date):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return datetime.date.fromisoformat(value)
        except ValueError:
            pass
    raise ValidationError({name: "A day as YYYY-MM-DD."})


def do_update_mailbox(box: Mailbox, *, actor, data: dict) -> Mailbox:
    accept_only(data, MAILBOX_UPDATE_FIELDS + MAILBOX_SECRETS)
    before = audit.snapshot(box, MAILBOX_UPDATE_FIELDS)
    if "quota_mb" in data:
        box.quota_mb = data["quota_mb"]
    if "suspended" in data:
        if not isinstance(data["suspended"], bool):
            raise ValidationError({"suspended": "true or false."})
        box.suspended = data["suspended"]
    if "send_limit_per_hour" in data:
        limit = data["send_limit_per_hour"]
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValidationError({"send_limit_per_hour": "A whole number, 0 for no limit."})
        if limit != box.send_limit_per_hour and not may_set_send_limit(actor, box):
            raise ValidationError(
                {"send_limit_per_hour": "Only your provider or an administrator sets this."}
            )
        box.send_limit_per_hour = limit
    if "autoreply" in data:
        if not isinstance(data["autoreply"], bool):
            raise ValidationError({"autoreply": "true or false."})
        box.autoreply = data["autoreply"]
    for name in ("autoreply_subject", "autoreply_body"):
        if name in data:
            refuse_nul_in(data, [name])
            value = data[name]
            if not isinstance(value, str):
                raise ValidationError({name: "Text."})
            # The subject is one line; the body may span lines: no other control characters.
            check = validate_plain_text if name == "autoreply_subject" else validate_multiline_text
            try:
                check(value)
            except ValidationError as exc:
                raise ValidationError({name: exc.messages}) from exc
            setattr(box, name, value.strip() if name == "autoreply_subject" else value)
    for name in ("autoreply_start", "autoreply_end"):
        if name in data:
            setattr(box, name, _date_or_none(data[name], name))
    if box.autoreply_start and box.autoreply_end and box.autoreply_end < box.autoreply_start:
        raise ValidationError({"autoreply_end": "The last day comes after the first."})
    if box.autoreply and not box.autoreply_body.strip():
        raise ValidationError({"autoreply_body": "Write the reply."})
    password = data.get("password")
    if password:
        try:
            box.password_hash = passwords.hash_password(password)
        except ValidationError as exc:
            raise ValidationError({"password": exc.messages}) from exc
        box.password_changed_at = timezone.now()
    box.full_clean()
    changes = audit.diff(before, audit.snapshot(box, MAILBOX_UPDATE_FIELDS))
    if password:
        changes["password"] = ["(hidden)", "(changed)"]
    if not changes:
        return box
    with transaction.atomic():
        box.status = Status.PENDING
        box.save()
        audit.record(
            "mailbox.update", box, actor=actor, owner_id=box.domain.owner_id, changes=changes
        )
        apply_mail(box.domain, actor=actor)
    return box


def set_billing_hold(box: Mailbox, *, hold: bool, reason: str) -> bool:
    """Dunning's hold on a mailbox (billing only: no owner-facing path reaches it); the
    owner's and staff's ``suspended`` is left as it is. False if nothing changed."""
    with transaction.atomic():
        if not Mailbox.objects.filter(pk=box.pk, billing_hold=not hold).update(
            billing_hold=hold, status=Status.PENDING
        ):
            return False
        box.billing_hold = hold
        audit.record(
            "mailbox.billing_hold",
            box,
            owner_id=box.domain.owner_id,
            changes={"billing_hold": [not hold, hold], "reason": reason[:200]},
        )
        apply_mail(box.domain, actor=None)
    return True


def do_delete_mailbox(box: Mailbox, *, actor) -> None:
    domain = box.domain
    with transaction.atomic():
        audit.record("mailbox.delete", box, actor=actor, owner_id=domain.owner_id)
        box.delete()
        apply_mail(domain, actor=actor)


# ----------------------------------------------------------------- aliases, forwarders


def _destinations(value) -> str:
    try:
        return clean_destinations(value)
    except ValidationError as exc:
        raise ValidationError({"destinations": exc.messages}) from exc


def do_create_alias(*, actor, data: dict) -> MailAlias:
    accept_only(data, ALIAS_FIELDS)
    data = dict(data)
    refuse_nul_in(data, ["local_part", "destinations"])
    domain = _domain_for(actor, data.get("domain"))
    local = _local_part(domain, data.get("local_part"))
    alias = MailAlias(
        domain=domain, local_part=local, destinations=_destinations(data.get("destinations"))
    )
    alias.full_clean()
    with transaction.atomic():
        alias.save()
        audit.record(
            "mail_alias.create",
            alias,
            actor=actor,
            owner_id=domain.owner_id,
            changes=audit.diff({}, audit.snapshot(alias, ALIAS_FIELDS[1:])),
        )
        apply_mail(domain, actor=actor, units={MAPS_UNIT})
    return alias


def do_update_alias(alias: MailAlias, *, actor, data: dict) -> MailAlias:
    accept_only(data, ALIAS_UPDATE_FIELDS)
    refuse_nul_in(data, ALIAS_UPDATE_FIELDS)
    before = audit.snapshot(alias, ALIAS_UPDATE_FIELDS)
    if "destinations" in data:
        alias.destinations = _destinations(data["destinations"])
    changes = audit.diff(before, audit.snapshot(alias, ALIAS_UPDATE_FIELDS))
    if not changes:
        return alias
    with transaction.atomic():
        alias.save(update_fields=["destinations"])
        audit.record(
            "mail_alias.update",
            alias,
            actor=actor,
            owner_id=alias.domain.owner_id,
            changes=changes,
        )
        apply_mail(alias.domain, actor=actor, units={MAPS_UNIT})
    return alias


def do_delete_alias(alias: MailAlias, *, actor) -> None:
    domain = alias.domain
    with transaction.atomic():
        audit.record("mail_alias.delete", alias, actor=actor, owner_id=domain.owner_id)
        alias.delete()
        apply_mail(domain, actor=actor, units={MAPS_UNIT})


# ------------------------------------------------------------------------ mail servers


def do_prepare_mail(server, *, actor, data: dict | None = None):
    """Install and configure Postfix, Dovecot and OpenDKIM on ``server`` (mail/prepare.py)
    as an audited Operation. Those who may apply to the server may prepare it; the panel's
    own host (local transport) is for administrators only."""
    from core.operations import start_operation
    from core.policy import APPLY

    accept_only(data or {}, [])
    if actor is not None and not may(actor, APPLY, server):
        raise ValidationError({"server": "You cannot prepare this server."})
    if server.transport == "local" and actor is not None and role_of(actor) != ADMIN:
        raise ValidationError(
            {"transport": "Only administrators may manage the panel's own host (local transport)."}
        )
    with transaction.atomic():
        audit.record("server.prepare_mail", server, actor=actor, owner_id=server.owner_id)
        return start_operation(
            kind="mail.prepare",
            task="mail.prepare.prepare_mail",
            owner=server.owner,
            requested_by=actor,
            target=server,
            target_action=APPLY,
            lock_key=server.lock_key,
            args={"server_id": server.pk},
        )


def start_dns_check(domain: MailDomain, *, actor):
    """Ask the DNS for the records ``domain`` needs (mail/dnscheck.py), as an Operation."""
    from core.operations import start_operation

    if actor is not None and not may(actor, CHANGE, domain):
        raise ValidationError({"domain": "Choose one of your mail domains."})
    return start_operation(
        kind="mail.dns_check",
        task="mail.dnscheck.check_records",
        owner=domain.owner,
        requested_by=actor,
        target=domain,
        target_action=CHANGE,  # as the API and the portal ask (check-dns is a CHANGE action)
        args={"domain_id": domain.pk},
    )


def _server_operation(server, actor, kind: str, task: str, args: dict | None = None):
    from core.operations import start_operation
    from core.policy import APPLY

    if actor is not None and not may(actor, APPLY, server):
        raise ValidationError({"server": "You cannot manage this server's mail."})
    return start_operation(
        kind=kind,
        task=task,
        owner=server.owner,
        requested_by=actor,
        target=server,
        target_action=APPLY,
        lock_key=f"{server.lock_key}:mail-queue",
        args={"server_id": server.pk, **(args or {})},
    )


def start_read_queue(server, *, actor):
    """Read the server's mail queue (postqueue -j) into its MailServerState."""
    return _server_operation(server, actor, "mail.queue_read", "mail.queue.read_queue")


def start_read_usage(server, *, actor):
    """Read every mailbox's storage (doveadm quota get -A) into Mailbox.used_kb."""
    return _server_operation(server, actor, "mail.usage_read", "mail.queue.read_usage")


def do_retry_queued(server, *, actor, data: dict):
    """Try chosen queued messages again now (postqueue -i), audited."""
    from mail.queue import clean_queue_ids

    accept_only(data, ["queue_ids"])
    ids = clean_queue_ids(data.get("queue_ids"))
    with transaction.atomic():
        audit.record("mail.queue_retry", server, actor=actor, owner_id=server.owner_id,
                     changes={"queue_ids": ids})  # fmt: skip
        return _server_operation(
            server, actor, "mail.queue_retry", "mail.queue.retry_queued", {"queue_ids": ids}
        )


def do_delete_queued(server, *, actor, data: dict):
    """Delete chosen queued messages (postsuper -d), audited."""
    from mail.queue import clean_queue_ids

    accept_only(data, ["queue_ids"])
    ids = clean_queue_ids(data.get("queue_ids"))
    with transaction.atomic():
        audit.record("mail.queue_delete", server, actor=actor, owner_id=server.owner_id,
                     changes={"queue_ids": ids})  # fmt: skip
        return _server_operation(
            server, actor, "mail.queue_delete", "mail.queue.delete_queued", {"queue_ids": ids}
        )
