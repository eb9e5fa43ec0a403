"""Drift: managed files changed, re-permissioned or removed by hand since the panel wrote them.

The database's record (AppliedFile) is compared with a hash and stat of every file on the
server. A drifted file's record is set to what was found and its unit marked dirty, so the
next apply puts the panel's version back.
"""

from __future__ import annotations

import difflib
import secrets

from django.db import transaction

from servers.engine.engine import render, shard_of
from servers.engine.profile import profile_for
from servers.engine.remote import RemoteRun
from servers.engine.state import mark_dirty
from servers.models import AppliedFile, Server
from servers.transport import Transport

MAX_DIFFS = 50


def check_drift(server: Server, t: Transport) -> list[dict]:
    profile = profile_for(server)
    remote = RemoteRun(t, profile.state_dir, secrets.token_hex(6))
    records = {a.path: a for a in AppliedFile.objects.filter(server=server)}
    actual = remote.hash(sorted(records))
    items, diffs = [], 0
    for path, rec in sorted(records.items()):
        now = actual.get(path)
        item = {"path": path, "unit": rec.unit, "expected": rec.sha256, "actual": "", "diff": ""}
        if now is None:
            items.append({**item, "kind": "missing"})
        elif now.sha256 != rec.sha256:
            diff = ""
            if diffs < MAX_DIFFS:
                diffs += 1
                diff = _diff(server, profile, rec, path, t)
            items.append({**item, "kind": "changed", "actual": now.sha256, "diff": diff})
        elif (now.mode, now.owner, now.group) != (rec.mode, rec.owner, rec.group):
            was = f"{rec.mode:04o} {rec.owner}:{rec.group}"
            found = f"{now.mode:04o} {now.owner}:{now.group}"
            items.append(
                {**item, "kind": "mode", "actual": now.sha256, "diff": f"{was} -> {found}"}
            )
    with transaction.atomic():
        for entry in items:
            found = actual.get(entry["path"])
            rows = AppliedFile.objects.filter(server=server, path=entry["path"])
            if found is None:
                rows.delete()
            else:
                rows.update(
                    sha256=found.sha256,
                    mode=found.mode,
                    owner=found.owner,
                    group=found.group,
                    shard=shard_of(entry["path"]),
                )
        if items:
            mark_dirty(server, {i["unit"] for i in items})
    return items


def _diff(server, profile, rec: AppliedFile, path: str, t: Transport) -> str:
    desired, _failed = render(server, profile, {rec.unit})
    expected = desired.get(path)
    before = expected.content if expected and expected.sha256 == rec.sha256 else b""
    after = t.read_file(path) or b""
    text = "".join(
        difflib.unified_diff(
            before.decode(errors="replace").splitlines(True),
            after.decode(errors="replace").splitlines(True),
            fromfile=f"{path} (panel)",
            tofile=f"{path} (on server)",
        )
    )
    return text[:20000]
