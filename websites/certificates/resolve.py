"""Before ordering: does every name resolve to the server? (Else the ACME server's HTTP-01
request would reach some other machine, and the order would fail less clearly.)"""

from __future__ import annotations

import dns.exception
import dns.resolver
from django.conf import settings


def _resolver() -> dns.resolver.Resolver:
    configured = settings.PANEL_ACME_RESOLVERS
    if not configured:
        return dns.resolver.Resolver()
    res = dns.resolver.Resolver(configure=False)
    res.nameservers, ports = [], {}
    for item in configured:
        host, _, port = item.rpartition(":") if item.count(":") == 1 else (item, "", "")
        res.nameservers.append(host)
        if port:
            ports[host] = int(port)
    if ports:
        res.port = next(iter(ports.values()))
    res.lifetime = 5
    return res


def addresses_of(name: str) -> set[str]:
    res, found = _resolver(), set()
    for rdtype in ("A", "AAAA"):
        try:
            found.update(r.to_text() for r in res.resolve(name, rdtype))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            continue
        except dns.exception.DNSException as exc:
            raise LookupError(f"{name} could not be resolved: {exc}") from exc
    return found


def names_not_pointing(names: list[str], server_addresses: set[str]) -> list[str]:
    """Messages for the names that do not resolve to one of the server's addresses."""
    problems = []
    for name in names:
        try:
            found = addresses_of(name)
        except LookupError as exc:
            problems.append(str(exc))
            continue
        if not found:
            problems.append(f"{name} does not resolve (no A or AAAA record)")
        elif not found & server_addresses:
            problems.append(
                f"{name} resolves to {', '.join(sorted(found))}, not to this server "
                f"({', '.join(sorted(server_addresses))})"
            )
    return problems
