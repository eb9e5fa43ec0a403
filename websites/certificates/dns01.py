"""ACME DNS-01 through the panel's own zones (the dns app): which names of an order may use
it, and the responder that puts the ``_acme-challenge`` TXT records in the zones through the
DNS services (audited, published to the zone's nameservers), waits until every nameserver of
each zone serves them, and removes them afterwards (on failure too)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

from django.core.exceptions import ValidationError

from dns import services as dns_services
from dns.models import Zone
from websites.certificates.acme_client import AcmeError, Challenge

POLL_SECONDS = 0.5


class ChallengeNotServed(AcmeError):
    """The panel could not put the challenge in place: the ACME server was not asked."""


def order_names(site, wildcard: bool) -> list[str]:
    """The names a site's certificate covers: its domain and aliases; with ``wildcard``
    also ``*.DOMAIN``, and then the aliases the wildcard covers are left out (an ACME order
    must not name a host twice)."""
    if not wildcard:
        return list(site.names)
    star = f"*.{site.domain}"
    aliases = site.aliases.split()
    covered = {n for n in aliases if n.partition(".")[2] == site.domain}
    return [site.domain, star, *(n for n in aliases if n not in covered)]


def zones_for(names: list[str], owner) -> dict[str, Zone]:
    """Each name's zone (``*.x`` is validated at ``x``): a zone the panel serves that the
    site's owner may change. A ValidationError says which names have none."""
    found, missing = {}, []
    for name in names:
        base = name[2:] if name.startswith("*.") else name
        zone = dns_services.zone_serving(base, user=owner)
        if zone is None:
            missing.append(name)
        else:
            found[name] = zone
    if missing:
        raise ValidationError(
            {
                "challenge": (
                    f"DNS-01 needs every name in a zone the panel serves for this site's owner; "
                    f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} in none."
                )
            }
        )
    return found


class DnsResponder:
    """``publish``/``unpublish`` for ``AcmeClient.issue(kind="dns-01")``."""

    def __init__(self, owner, *, actor, wait: float, log: Callable[[str], None]) -> None:
        self.owner, self.actor, self.wait, self.log = owner, actor, wait, log
        self.records: dict[int, list] = defaultdict(list)  # zone pk -> records added
        self.zones: dict[int, Zone] = {}

    def publish(self, challenges: list[Challenge]) -> None:
        by_zone: dict[int, list[tuple[str, str]]] = defaultdict(list)
        try:
            zones = zones_for([c.label for c in challenges], self.owner)
        except ValidationError as exc:
            raise ChallengeNotServed(" ".join(exc.messages)) from exc
        for c in challenges:
            zone = zones[c.label]
            self.zones[zone.pk] = zone
            by_zone[zone.pk].append((c.dns_name, c.validation))
        ops = []
        for pk, items in by_zone.items():
            zone = self.zones[pk]
            self.log(f"Adding {len(items)} TXT record(s) _acme-challenge to {zone.name}")
            try:
                records, started = dns_services.do_add_challenge_records(
                    zone, actor=self.actor, items=items
                )
            except ValidationError as exc:
                raise ChallengeNotServed(f"{zone.name}: " + " ".join(exc.messages)) from exc
            self.records[pk] = records
            ops += started
        self._wait_served(by_zone, ops)

    def _wait_served(self, by_zone: dict[int, list[tuple[str, str]]], ops: list) -> None:
        """Until every nameserver of each zone answers every TXT (asked directly); a failed
        publish ends the wait at once with the nameserver's words."""
        from core.models import Operation

        deadline = time.monotonic() + self.wait
        while True:
            failed = Operation.objects.filter(
                pk__in=[op.pk for op in ops], state=Operation.State.FAILED
            ).first()
            if failed is not None:
                raise ChallengeNotServed(
                    f"publishing the challenge TXT records failed: {failed.error or failed.message}"
                )
            missing = []
            for pk, items in by_zone.items():
                missing += dns_services.txt_not_served(self.zones[pk], items)
            if not missing:
                self.log("Every nameserver serves the challenge TXT records")
                return
            if time.monotonic() > deadline:
                raise ChallengeNotServed(
                    f"after {self.wait:g} s, not every nameserver serves the challenge: "
                    + "; ".join(missing[:5])
                )
            time.sleep(POLL_SECONDS)

    def unpublish(self, challenges: list[Challenge]) -> None:
        for pk, records in self.records.items():
            if records:
                dns_services.do_delete_records(self.zones[pk], records, actor=self.actor)
                self.log(f"Removed the challenge TXT records from {self.zones[pk].name}")
        self.records.clear()
