"""The panel's DNS app: zones, records, publishing to nameservers.

dnspython, which this app drives, is a top-level package named ``dns`` too. This package
appends dnspython's directory to its own search path, so ``import dns.update`` still finds
dnspython's module while ``dns.apps``, ``dns.models`` ... are this app's; no app module may
take a name dnspython uses (tests/unit/test_dns_package.py checks both). The panel runs from
its checkout (an editable install), where the two directories stay apart.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys


def _dnspython_locations() -> list[str]:
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    elsewhere = [p for p in sys.path if os.path.abspath(p or os.curdir) != root]
    # Entry by entry: a plain module named dns on the path (bench/dns.py, when a benchmark
    # runs with bench/ first on sys.path) must not hide dnspython's package further on.
    for entry in elsewhere:
        spec = importlib.machinery.PathFinder.find_spec("dns", [entry])
        if spec is not None and spec.submodule_search_locations:
            found = [p for p in spec.submodule_search_locations if os.path.abspath(p) != here]
            if found:
                return found
    return []


__path__.extend(_dnspython_locations())  # noqa: F821 - a package's own __path__

from dns.version import version as __version__  # noqa: E402 - dnspython's, once reachable

__all__ = ["__version__"]
