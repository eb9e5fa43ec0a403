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


def test_a_plain_dns_module_earlier_on_the_path_does_not_hide_dnspython():
    """Benchmarks run with the checkout, then bench/, first on sys.path, and bench/dns.py
    is a module named dns: dnspython must still be found behind it."""
    import subprocess
    import sys

    root = Path(dns.apps.__file__).resolve().parent.parent
    code = (
        "import sys; sys.path[:0] = ['.', 'bench']; import dns.version; print(dns.version.version)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False
    )
    assert (root / "bench" / "dns.py").exists()
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == dns.version.version
