"""Strict checks for everything the VPS area passes to libvirt, qemu-img or cloud-init."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

from django.core.exceptions import ValidationError

HOSTNAME = re.compile(
    r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
)
LIBVIRT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
SNAPSHOT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,49}")
# The host, port and user of a remote hypervisor come from its server (and its pinned host
# key and credentials); the URI only says which transport and which libvirt instance.
LIBVIRT_URI = re.compile(
    r"test:///(?:default|[A-Za-z0-9._/-]{1,250}\.xml)"
    r"|qemu:///system(?:\?socket=/[A-Za-z0-9._/-]{1,200})?"
    r"|qemu\+(?:ssh|libssh):///system"
)
KEY_TYPES = {
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
}
IMAGE_FORMATS = {"qcow2", "raw"}


def validate_hostname(value: str) -> None:
    if not isinstance(value, str) or len(value) > 63 or not HOSTNAME.fullmatch(value):
        raise ValidationError(
            "A host name of lowercase letters, digits and hyphens (dots between labels)."
        )


def validate_libvirt_name(value: str) -> None:
    if not isinstance(value, str) or not LIBVIRT_NAME.fullmatch(value):
        raise ValidationError("Letters, digits, dots, hyphens and underscores only.")


def validate_snapshot_name(value: str) -> None:
    if not isinstance(value, str) or not SNAPSHOT_NAME.fullmatch(value):
        raise ValidationError("Up to 50 letters, digits, hyphens and underscores.")


def validate_libvirt_uri(value: str) -> None:
    if not isinstance(value, str) or not LIBVIRT_URI.fullmatch(value) or "/../" in value:
        raise ValidationError(
            "Use qemu:///system, qemu+libssh:///system, qemu+ssh:///system (the host, port "
            "and user come from the server) or test:///default."
        )


def parse_public_key(text: str) -> tuple[str, str]:
    """A single OpenSSH public key line, normalised, and its SHA256 fingerprint."""
    if not isinstance(text, str) or "\n" in text.strip() or "\x00" in text:
        raise ValidationError("One public key on one line.")
    parts = text.strip().split(None, 2)
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise ValidationError(
            "Not an OpenSSH public key: it starts with its type (ssh-ed25519, ssh-rsa, "
            "ecdsa-sha2-...)."
        )
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError as exc:
        raise ValidationError("The key's base64 part is damaged.") from exc
    # The blob starts with its own type name: a key pasted with a wrong prefix is refused.
    if len(blob) < 4 or blob[4 : 4 + int.from_bytes(blob[:4], "big")] != parts[0].encode():
        raise ValidationError("The key's data does not match its type.")
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_ssh_public_key

    if not parts[0].startswith("sk-"):
        try:
            key = load_ssh_public_key(f"{parts[0]} {parts[1]}".encode())
        except Exception as exc:  # noqa: BLE001 - any parse failure (incl. unsupported curves)
            raise ValidationError("The key's data is not a valid public key.") from exc
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
            raise ValidationError("RSA keys must have at least 2048 bits.")
    comment = parts[2] if len(parts) > 2 else ""
    if comment and not re.fullmatch(r"[\x20-\x7e]{1,200}", comment):
        raise ValidationError("The comment after the key must be plain text.")
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    line = f"{parts[0]} {parts[1]}" + (f" {comment}" if comment else "")
    return line, f"SHA256:{digest}"


def inspect_image(path: Path) -> dict:
    """``qemu-img info`` of an uploaded image: its format and virtual size, or a
    ValidationError for anything the panel does not take (other formats, backing files)."""
    try:
        done = subprocess.run(
            [shutil.which("qemu-img") or "qemu-img", "info", "--output=json", "--", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except FileNotFoundError as exc:
        raise ValidationError("qemu-img is not installed on the panel's host.") from exc
    if done.returncode != 0:
        raise ValidationError(f"qemu-img could not read the image: {done.stderr.strip()[:300]}")
    info = json.loads(done.stdout)
    fmt = info.get("format")
    if fmt not in IMAGE_FORMATS:
        raise ValidationError(f"Images must be qcow2 or raw; this one is {fmt}.")
    if info.get("backing-filename") or info.get("full-backing-filename"):
        raise ValidationError("Images with a backing file are refused: upload a standalone one.")
    if fmt == "qcow2" and (info.get("format-specific", {}).get("data", {}).get("data-file")):
        raise ValidationError("qcow2 images with an external data file are refused.")
    return {"format": fmt, "virtual_size": int(info["virtual-size"])}
