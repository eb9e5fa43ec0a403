"""The creation wizard's DNS pre-check: where do the new site's names point, and is that
one of the servers the user may host on? Advice only (the site is created either way; the
certificate waits for the names to point here), so it is bounded in time and never fails."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from servers.engine import profile_for
from websites.certificates.resolve import addresses_of

MAX_NAMES = 6  # the domain and the first aliases: enough to tell whether DNS is ready
BUDGET_S = 3.0  # the wizard waits this long at most, whatever the resolvers do


@dataclass
class NameCheck:
    name: str
    addresses: list[str] = field(default_factory=list)
    servers: list[str] = field(default_factory=list)  # names of the servers it points at
    problem: str = ""

    @property
    def points_at(self) -> bool:
        return bool(self.servers)


def server_addresses(server) -> set[str]:
    """The addresses a site on ``server`` is reached at (what the certificate check uses)."""
    return set(profile_for(server).public_addresses.split()) or {server.address}


def check_names(names: list[str], servers) -> list[NameCheck]:
    """Each name's addresses and the servers among ``servers`` they belong to."""
    by_address: dict[str, list[str]] = {}
    for server in servers:
        for address in server_addresses(server):
            by_address.setdefault(address, []).append(server.name)
    names = names[:MAX_NAMES]
    pool = ThreadPoolExecutor(max_workers=len(names) or 1)
    futures = {name: pool.submit(addresses_of, name) for name in names}
    wait(futures.values(), timeout=BUDGET_S)
    pool.shutdown(wait=False, cancel_futures=True)  # a slow resolver is left behind
    results = []
    for name, future in futures.items():
        check = NameCheck(name)
        if not future.done():
            check.problem = "the DNS did not answer in time"
        elif future.exception() is not None:
            check.problem = str(future.exception())
        else:
            check.addresses = sorted(future.result())
            if not check.addresses:
                check.problem = "no A or AAAA record yet"
            check.servers = sorted({s for a in check.addresses for s in by_address.get(a, [])})
        results.append(check)
    return results
