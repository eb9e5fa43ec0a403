"""A mail server's queue and its mailboxes' usage, read over the transport as Operations.

- The queue: ``postqueue -j`` (one JSON object a message) kept on the server's
  ``MailServerState`` (at most ``KEEP`` messages, the count of all); retry of chosen messages
  (held ones released with ``postsuper -H``, then ``postqueue -i ID``), delete (``postsuper -d
  -``, ids on stdin). Queue ids are validated whole (``QUEUE_ID``) before they reach a command.
- Usage: ``doveadm quota get -F`` (each mailbox's storage in KiB, users on stdin) into
  ``Mailbox.used_kb``; ``read_all_usage`` starts that for every prepared mail server on a
  schedule (``PANEL_MAIL_USAGE_EVERY_MINUTES``).
"""

from __future__ import annotations

import json
import re

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from core.operations import OperationContext, OperationError
from mail.models import Mailbox, MailServerState
from servers.engine import profile_for
from servers.models import Server
from servers.transport import TransportError

# Short (hex) and long Postfix queue ids; never a word postsuper treats specially ("ALL").
QUEUE_ID = re.compile(r"[0-9A-Za-z]{6,20}")
KEEP = 500
# doveadm -F reads a file it can seek in: the users from stdin go to a scratch file first.
QUOTA_GET = """
f=$(mktemp) || exit 3
trap 'rm -f -- "$f"' EXIT
cat > "$f" && doveadm -c "$1" -f tab quota get -F "$f"
"""
MAX_IDS = 200


def clean_queue_ids(value) -> list[str]:
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    if not isinstance(value, list | tuple) or not value or len(value) > MAX_IDS:
        raise ValidationError({"queue_ids": f"Give between 1 and {MAX_IDS} queue ids."})
    out = []
    for item in value:
        if not isinstance(item, str) or not QUEUE_ID.fullmatch(item):
            raise ValidationError({"queue_ids": f"{str(item)[:40]!r} is not a queue id."})
        if item not in out:
            out.append(item)
    return out


def _connect(ctx: OperationContext, server: Server):
    from servers import connection

    try:
        return connection.open_transport(server)
    except TransportError as exc:
        raise OperationError(str(exc)) from exc


def _message(raw: dict) -> dict:
    """The fields the page shows, each bounded (the queue is the senders' words)."""
    recipients = [
        {
            "address": str(r.get("address", ""))[:320],
            "reason": str(r.get("delay_reason", ""))[:500],
        }
        for r in (raw.get("recipients") or [])[:20]
        if isinstance(r, dict)
    ]
    return {
        "queue_id": str(raw.get("queue_id", ""))[:20],
        "queue_name": str(raw.get("queue_name", ""))[:20],
        "arrival_time": raw.get("arrival_time") if isinstance(raw.get("arrival_time"), int) else 0,
        "size": raw.get("message_size") if isinstance(raw.get("message_size"), int) else 0,
        "sender": str(raw.get("sender", ""))[:320],
        "recipients": recipients,
    }


def read(t, profile) -> tuple[list[dict], int]:
    """(the first KEEP messages, how many there are)."""
    res = t.run(["postqueue", "-c", profile.postfix_config_dir, "-j"], timeout=120)
    if not res.ok:
        raise OperationError(f"postqueue -j failed: {(res.stderr or res.stdout).strip()[:500]}")
    messages, total = [], 0
    for line in res.stdout.splitlines():
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except ValueError:
            continue
        total += 1
        if len(messages) < KEEP and isinstance(raw, dict):
            messages.append(_message(raw))
    return messages, total


def _store(server: Server, messages: list[dict], total: int) -> None:
    MailServerState.objects.update_or_create(
        server=server,
        defaults={"queue": messages, "queue_total": total, "queue_read_at": timezone.now()},
    )


def read_queue(ctx: OperationContext, server_id: int) -> str:
    server = Server.objects.get(pk=server_id)
    t = _connect(ctx, server)
    ctx.progress(30, "Reading the queue (postqueue -j)")
    messages, total = read(t, profile_for(server))
    _store(server, messages, total)
    return f"{total} message(s) in the queue"


def retry_queued(ctx: OperationContext, server_id: int, queue_ids: list[str]) -> str:
    server = Server.objects.get(pk=server_id)
    queue_ids = clean_queue_ids(queue_ids)
    profile = profile_for(server)
    t = _connect(ctx, server)
    # Held ones (a sending limit) are released first; for the others -H does nothing.
    stdin = "".join(f"{q}\n" for q in queue_ids).encode()
    res = t.run(["postsuper", "-c", profile.postfix_config_dir, "-H", "-"], timeout=120,
                stdin=stdin)  # fmt: skip
    if not res.ok:
        raise OperationError(f"postsuper -H failed: {(res.stderr or res.stdout).strip()[:500]}")
    for qid in queue_ids:
        res = t.run(["postqueue", "-c", profile.postfix_config_dir, "-i", qid], timeout=60)
        if not res.ok:
            ctx.log(f"{qid}: {(res.stderr or res.stdout).strip()[:300]}", "warning")
        else:
            ctx.log(f"{qid}: delivery tried again")
    messages, total = read(t, profile)
    _store(server, messages, total)
    return f"Retried {len(queue_ids)} message(s); {total} in the queue"


def delete_queued(ctx: OperationContext, server_id: int, queue_ids: list[str]) -> str:
    server = Server.objects.get(pk=server_id)
    queue_ids = clean_queue_ids(queue_ids)
    profile = profile_for(server)
    t = _connect(ctx, server)
    stdin = "".join(f"{q}\n" for q in queue_ids).encode()
    res = t.run(
        ["postsuper", "-c", profile.postfix_config_dir, "-d", "-"], timeout=120, stdin=stdin
    )
    if not res.ok:
        raise OperationError(f"postsuper -d failed: {(res.stderr or res.stdout).strip()[:500]}")
    ctx.log((res.stderr or res.stdout).strip()[:1000] or "postsuper said nothing")
    messages, total = read(t, profile)
    _store(server, messages, total)
    left = {m["queue_id"] for m in messages} & set(queue_ids)
    if left:
        raise OperationError(f"Still in the queue after postsuper -d: {', '.join(sorted(left))}")
    return f"Deleted {len(queue_ids)} message(s); {total} in the queue"


def read_usage(ctx: OperationContext, server_id: int) -> str:
    """Every mailbox's storage from Dovecot's quota plugin, in one command."""
    server = Server.objects.get(pk=server_id)
    profile = profile_for(server)
    t = _connect(ctx, server)
    ctx.progress(30, "Reading the mailboxes' usage (doveadm quota get)")
    boxes = list(Mailbox.objects.filter(domain__server=server).select_related("domain"))
    if not boxes:
        return "No mailboxes on this server"
    # The users come on stdin (-F): the panel's passwd-files cannot be listed (-A) by
    # Dovecot, their path holds the domain.
    users = "".join(f"{box.address}\n" for box in boxes).encode()
    res = t.run(["sh", "-c", QUOTA_GET, "quota-get", profile.dovecot_conf], timeout=300,
                stdin=users)  # fmt: skip
    if not res.ok:
        raise OperationError(f"doveadm quota get failed: {(res.stderr or res.stdout)[:500]}")
    used: dict[str, int] = {}
    lines = res.stdout.splitlines()
    header = lines[0].split("\t") if lines else []
    for line in lines[1:]:
        row = dict(zip(header, line.split("\t"), strict=False))
        if row.get("Type") == "STORAGE" and str(row.get("Value", "")).isdigit():
            used[row.get("Username", "")] = int(row["Value"])
    now = timezone.now()
    changed = []
    for box in boxes:
        value = used.get(box.address)
        if value is not None:
            box.used_kb, box.used_at = value, now
            changed.append(box)
    with transaction.atomic():
        Mailbox.objects.bulk_update(changed, ["used_kb", "used_at"], batch_size=500)
    # The queue too: held messages (a mailbox over its sending limit) raise an alert.
    messages, total = read(t, profile)
    _store(server, messages, total)
    return f"Usage of {len(changed)} mailbox(es) read; {total} message(s) in the queue"


def held_source(rule, now):
    """``mail_held``: messages on HOLD (a mailbox went over its sending limit) in the queues
    of the servers the rule's owner may see, as last read."""
    from monitoring.alerts import Finding, servers_in_scope

    states = MailServerState.objects.filter(server__in=servers_in_scope(rule)).select_related(
        "server"
    )
    for state in states:
        for m in state.queue:
            if m.get("queue_name") == "hold":
                yield Finding(
                    subject=f"mailqueue:{state.server.uuid.hex}:{m.get('queue_id', '')}",
                    label=m.get("sender") or state.server.name,
                    message=f"Mail from {m.get('sender') or '(unknown)'} is held on "
                    f"{state.server.name}: its sending limit was reached"[:500],
                    server_id=state.server_id,
                )


def read_all_usage() -> int:
    """Scheduled: a usage Operation for every prepared mail server that has none waiting."""
    from core.models import Operation
    from mail import services

    waiting = set(
        Operation.objects.filter(
            kind="mail.usage_read", state__in=[Operation.State.QUEUED, Operation.State.RUNNING]
        ).values_list("target_id", flat=True)
    )
    started = 0
    for server in Server.objects.filter(components__has_key="mail").iterator():
        if str(server.uuid) not in waiting:
            services.start_read_usage(server, actor=None)
            started += 1
    return started
