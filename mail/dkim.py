"""DKIM keys: one RSA key per mail domain, made by ``opendkim-genkey``, kept encrypted in
the panel (the private half goes to the mail server through the apply engine, the public
half into the domain's TXT record), and OpenDKIM's KeyTable and SigningTable."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from django.core.exceptions import ValidationError

SELECTOR = re.compile(r"[a-z][a-z0-9-]{0,30}")
PUBLIC = re.compile(r"[A-Za-z0-9+/=]{200,1000}")
PEM = re.compile(
    r"-----BEGIN (RSA )?PRIVATE KEY-----\n"
    r"[A-Za-z0-9+/=\n]{500,4000}"
    r"-----END (RSA )?PRIVATE KEY-----\n"
)
DEFAULT_SELECTOR = "panel"


def generate(domain: str, selector: str = DEFAULT_SELECTOR) -> tuple[str, str]:
    """(private key PEM, public key base64) from ``opendkim-genkey -b 2048``."""
    if not SELECTOR.fullmatch(selector):
        raise ValidationError(f"{selector!r} is not a DKIM selector.")
    program = shutil.which("opendkim-genkey") or (
        "/usr/sbin/opendkim-genkey" if Path("/usr/sbin/opendkim-genkey").exists() else None
    )
    if program is None:
        raise ValidationError("opendkim-genkey is not installed on the panel's host.")
    with tempfile.TemporaryDirectory(prefix="panel-dkim-") as tmp:
        subprocess.run(
            [program, "-b", "2048", "-D", tmp, "-d", domain, "-s", selector],
            check=True,
            capture_output=True,
            timeout=60,
        )
        private = (Path(tmp) / f"{selector}.private").read_text()
        record = (Path(tmp) / f"{selector}.txt").read_text()
    public = "".join(re.findall(r'"([^"]*)"', record)).split("p=", 1)[-1].strip().rstrip(";")
    if not PEM.fullmatch(private) or not PUBLIC.fullmatch(public):
        raise ValidationError("opendkim-genkey gave an unexpected key.")
    return private, public


def txt_content(public: str) -> str:
    """The TXT record's content as quoted strings of at most 255 characters each."""
    if not PUBLIC.fullmatch(public):
        raise ValueError("not a DKIM public key")
    text = f"v=DKIM1; k=rsa; p={public}"
    return " ".join(f'"{text[i : i + 250]}"' for i in range(0, len(text), 250))


def key_name(domain: str, selector: str) -> str:
    return f"{selector}._domainkey.{domain}"


def render_tables(rows: list[tuple[str, str]], key_dir: str) -> dict[str, str]:
    """OpenDKIM's KeyTable and SigningTable for ``rows`` of (domain, selector)."""
    keys, signing = [], []
    for domain, selector in rows:
        if not SELECTOR.fullmatch(selector):
            continue
        name = key_name(domain, selector)
        keys.append(f"{name} {domain}:{selector}:{key_dir}/{domain}.private")
        signing.append(f"*@{domain} {name}")
    header = "# Managed by the hosting panel: changes here are reported as drift and undone."
    return {
        "KeyTable": "\n".join([header, *keys]) + "\n",
        "SigningTable": "\n".join([header, *signing]) + "\n",
    }
