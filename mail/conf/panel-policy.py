#!/usr/bin/python3
# Managed by the hosting panel ("Prepare for mail"): changes here are reported as drift and undone.
"""The panel's Postfix policy service (spawned by master.cf per SMTP session; requests on
stdin, answers on stdout: https://www.postfix.org/SMTPD_POLICY_README.html).

- Mail from a logged-in mailbox (sasl_username): each recipient counts against the
  mailbox's hourly limit (RULES["limits"]); above it the message is put on HOLD, kept in
  the queue for staff to release or delete, and the panel raises an alert.
- Other mail to a panel domain: a sender (address or domain) on the domain's deny list is
  refused unless on its allow list.

Args: RULES_JSON STATE_DIR. Standard library only (Debian's python3)."""

import json
import os
import sqlite3
import sys
import time

RULES, STATE = sys.argv[1], sys.argv[2]
_rules = {"mtime": None, "value": {}}


def rules():
    try:
        mtime = os.stat(RULES).st_mtime
    except OSError:
        return {}
    if mtime != _rules["mtime"]:
        try:
            with open(RULES, encoding="utf-8") as f:
                _rules["value"] = json.load(f)
        except (OSError, ValueError):
            _rules["value"] = {}
        _rules["mtime"] = mtime
    return _rules["value"]


def over_limit(user, limit):
    """Count this recipient; True when the mailbox sent ``limit`` in the last hour already."""
    db = sqlite3.connect(os.path.join(STATE, "rate.sqlite"), timeout=10)
    try:
        with db:
            db.execute("CREATE TABLE IF NOT EXISTS sent (user TEXT, at REAL)")
            now = time.time()
            db.execute("DELETE FROM sent WHERE at < ?", (now - 3600,))
            (count,) = db.execute("SELECT count(*) FROM sent WHERE user = ?", (user,)).fetchone()
            if count >= limit:
                return True
            db.execute("INSERT INTO sent VALUES (?, ?)", (user, now))
            return False
    finally:
        db.close()


def decide(attrs):
    if attrs.get("protocol_state", "RCPT") != "RCPT":
        return "DUNNO"
    r = rules()
    user = attrs.get("sasl_username", "").lower()
    if user:
        limit = r.get("limits", {}).get(user)
        if isinstance(limit, int) and limit > 0 and over_limit(user, limit):
            return f"HOLD sending limit of {limit} recipients an hour reached by {user}"
        return "DUNNO"
    domain = attrs.get("recipient", "").rpartition("@")[2].lower()
    lists = r.get("domains", {}).get(domain)
    if not lists:
        return "DUNNO"
    sender = attrs.get("sender", "").lower()
    keys = {sender, sender.rpartition("@")[2]} - {""}
    if keys & set(lists.get("allow", [])):
        return "DUNNO"
    if keys & set(lists.get("deny", [])):
        return f"REJECT 5.7.1 {sender or 'this sender'} is refused by {domain}'s rules"
    return "DUNNO"


def main():
    attrs = {}
    for line in sys.stdin:
        line = line.rstrip("\n")
        if line:
            name, _, value = line.partition("=")
            attrs[name] = value
            continue
        try:
            action = decide(attrs)
        except Exception as exc:  # a broken state file must not refuse mail
            action = f"DUNNO policy error: {exc}"[:200]
        sys.stdout.write(f"action={action}\n\n")
        sys.stdout.flush()
        attrs = {}


if __name__ == "__main__":
    main()
