"""The DNS app and dnspython share the package name ``dns`` (dns/__init__.py)."""

import importlib
import pkgutil
from pathlib import Path

import dns.message
import dns.update
import dns.version

import dns
import dns.apps


def test_dnspython_modules_resolve_to_dnspython():
    app_dir = Path(dns.apps.__file__).resolve().parent
    for module in (dns.update, dns.message, dns.version):
        assert Path(module.__file__).resolve().parent != app_dir, module
    assert dns.__version__ == dns.version.version
    assert importlib.import_module("dns.rdatatype").A == 1


def test_no_app_module_takes_a_dnspython_name():
    app_dir, *others = dns.__path__
    ours = {m.name for m in pkgutil.iter_modules([app_dir])}
    theirs = {m.name for m in pkgutil.iter_modules(others)}
    assert others and not ours & theirs, ours & theirs
