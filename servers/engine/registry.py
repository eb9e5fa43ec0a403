"""Where apps register their providers and services (from their AppConfig.ready())."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from servers.engine.contracts import ApplyError, Provider, Service, ServiceFactory

if TYPE_CHECKING:
    from servers.engine.publisher import Publisher

_providers: list[Provider] = []
_publishers: dict[str, Publisher] = {}
_services: dict[str, type[Service]] = {}
_families: dict[str, tuple[re.Pattern, ServiceFactory, type[Service]]] = {}


def register_provider(provider: Provider) -> None:
    if any(p.unit_prefix == provider.unit_prefix for p in _providers):
        raise ValueError(f"a provider for units {provider.unit_prefix!r} is registered already")
    _providers.append(provider)


def register_service(cls: type[Service]) -> None:
    """A service with one fixed name (``nginx``, ``nftables``)."""
    if cls.name in _services:
        raise ValueError(f"service {cls.name!r} is registered already")
    _services[cls.name] = cls


def register_service_family(
    prefix: str, suffix_pattern: str, factory: ServiceFactory, cls: type[Service]
) -> None:
    """Services named ``prefix`` + a suffix matching ``suffix_pattern`` (``php-fpm8.2``);
    ``cls`` declares the family's profile keys."""
    _families[prefix] = (re.compile(suffix_pattern), factory, cls)


def providers() -> list[Provider]:
    return list(_providers)


def report(server, ok: set[str], failed: dict[str, str]) -> None:
    """Tell each provider how its own units fared (a provider never sees another's units)."""
    for provider in _providers:
        prefix = provider.unit_prefix
        provider.report(
            server,
            {u for u in ok if u.startswith(prefix)},
            {u: why for u, why in failed.items() if u.startswith(prefix)},
        )


def service(name: str) -> Service:
    """A fresh instance of the named service, for one run."""
    if name in _services:
        return _services[name]()
    for prefix, (pattern, factory, _cls) in _families.items():
        suffix = name.removeprefix(prefix)
        if name.startswith(prefix) and pattern.fullmatch(suffix):
            return factory(suffix)
    raise ApplyError(f"no service {name!r} is known to the apply engine")


def service_classes() -> list[type[Service]]:
    return [*_services.values(), *(cls for _p, _f, cls in _families.values())]


@contextlib.contextmanager
def only_providers(*items: Provider) -> Iterator[None]:
    """Tests: apply with exactly these providers for the duration of the block."""
    saved = list(_providers)
    _providers[:] = list(items)
    try:
        yield
    finally:
        _providers[:] = saved


def register_publisher(publisher: Publisher) -> None:
    """A publisher for targets that are not files (servers.engine.publisher). Several may
    share a unit prefix: BIND and PowerDNS publishers publish the same zones."""
    if not publisher.name:
        raise ValueError(f"{publisher!r} has no name")
    if publisher.name in _publishers:
        raise ValueError(f"a publisher named {publisher.name!r} is registered already")
    _publishers[publisher.name] = publisher


def publisher(name: str) -> Publisher:
    try:
        return _publishers[name]
    except KeyError:
        raise ApplyError(f"no publisher {name!r} is known to the apply engine") from None


def publishers() -> list[Publisher]:
    return list(_publishers.values())


@contextlib.contextmanager
def only_publishers(*items: Publisher) -> Iterator[None]:
    """Tests: publish with exactly these publishers for the duration of the block."""
    saved = dict(_publishers)
    _publishers.clear()
    _publishers.update({p.name: p for p in items})
    try:
        yield
    finally:
        _publishers.clear()
        _publishers.update(saved)
