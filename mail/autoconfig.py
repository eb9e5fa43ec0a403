"""Mail clients configuring themselves: Thunderbird's autoconfig (GET
``/mail/config-v1.1.xml?emailaddress=...``, also below ``/.well-known/autoconfig/``) and
Outlook's Autodiscover (POST ``/autodiscover/autodiscover.xml``, the request an XML body).

No login (a mail client asks before it has any), so they answer only for a live mail domain
the panel hosts whose server names a mail host; anything else, or an address that is not
strictly ``local@domain``, is 404. Mailboxes are never looked up (no address enumeration).
The answers are built with ElementTree (escaped); an Autodiscover body is at most 8 KB and
must be UTF-8 and may not hold a DTD (``<!``), so no entity is ever expanded."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET  # noqa: N817 (the usual name)

from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from mail.dnsrecords import mail_host, service_ports
from mail.models import MailDomain
from websites.validators import DOMAIN

ADDRESS = re.compile(r"([a-z0-9._+-]{1,64})@([a-z0-9.-]{1,253})")
MAX_BODY = 8192
REQUEST_NS = "{http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006}"
RESPONSE = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
OUTLOOK = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"


def _settings(address: str) -> tuple[str, str, int, int]:
    """(address, mail host, IMAP port, submission port) for a strictly valid address of a
    live mail domain the panel hosts; Http404 otherwise."""
    m = ADDRESS.fullmatch(address.strip().lower())
    if not m or not DOMAIN.fullmatch(m.group(2)) or m.group(1).startswith("."):
        raise Http404
    domain = (
        MailDomain.objects.filter(domain=m.group(2), suspended=False)
        .select_related("server")
        .first()
    )
    if domain is None:
        raise Http404
    host = mail_host(domain)
    if not host:
        raise Http404
    submission, imap = service_ports(domain)
    return m.group(0), host, imap, submission


def _xml(root: ET.Element) -> HttpResponse:
    body = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return HttpResponse(body, content_type="application/xml; charset=utf-8")


def _sub(parent: ET.Element, tag: str, text: str | int | None = None, **attrs) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = str(text)
    return element


@login_not_required
@require_GET
def thunderbird(request) -> HttpResponse:
    address, host, imap, submission = _settings(request.GET.get("emailaddress", ""))
    domain = address.rpartition("@")[2]
    root = ET.Element("clientConfig", version="1.1")
    provider = _sub(root, "emailProvider", id=domain)
    for tag in ("domain", "displayName", "displayShortName"):
        _sub(provider, tag, domain)
    for kind, direction, port in (("imap", "incomingServer", imap),
                                  ("smtp", "outgoingServer", submission)):  # fmt: skip
        server = _sub(provider, direction, type=kind)
        _sub(server, "hostname", host)
        _sub(server, "port", port)
        _sub(server, "socketType", "STARTTLS")  # IMAP and submission both require it
        _sub(server, "authentication", "password-cleartext")
        _sub(server, "username", "%EMAILADDRESS%")
    return _xml(root)


@csrf_exempt  # no session, no login, nothing changes: a mail client's POST of an address
@login_not_required
@require_POST
def outlook(request) -> HttpResponse:
    raw = request.body[: MAX_BODY + 1]
    try:
        text = raw.decode("utf-8")  # (UTF-16 could hide a DTD from the check below)
    except UnicodeDecodeError as exc:
        raise Http404 from exc
    if len(raw) > MAX_BODY or "<!" in text or "\x00" in text:
        raise Http404
    try:
        root = ET.fromstring(text)  # noqa: S314 (no DTD reaches it: no entity is expanded)
    except ET.ParseError as exc:
        raise Http404 from exc
    found = root.find(f"{REQUEST_NS}Request/{REQUEST_NS}EMailAddress")
    if found is None or not found.text:
        raise Http404
    address, host, imap, submission = _settings(found.text)
    out = ET.Element("Autodiscover", xmlns=RESPONSE)
    response = _sub(out, "Response", xmlns=OUTLOOK)
    _sub(_sub(response, "User"), "DisplayName", address)
    account = _sub(response, "Account")
    _sub(account, "AccountType", "email")
    _sub(account, "Action", "settings")
    for kind, port in (("IMAP", imap), ("SMTP", submission)):
        protocol = _sub(account, "Protocol")
        _sub(protocol, "Type", kind)
        _sub(protocol, "Server", host)
        _sub(protocol, "Port", port)
        _sub(protocol, "DomainRequired", "off")
        _sub(protocol, "LoginName", address)
        _sub(protocol, "SPA", "off")
        _sub(protocol, "Encryption", "TLS")  # STARTTLS
        _sub(protocol, "AuthRequired", "on")
    return _xml(out)
