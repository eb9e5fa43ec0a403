"""libvirt fixtures: the test driver (in-process, shared state per process under
``test:///default``), a tiny qcow2 image, and a hypervisor row pointing at it."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from servers.models import Server
from tests.conftest import require_real


def need_libvirt():
    try:
        import libvirt  # noqa: F401
    except ImportError:
        require_real("libvirt-python is not installed (pip install '.[vps]')")
    for program in ("qemu-img", "xorriso"):
        if not shutil.which(program):
            require_real(f"{program} is not installed")


def make_image_file(path: Path, fmt: str = "qcow2", size: str = "64M", backing: Path | None = None):
    argv = ["qemu-img", "create", "-q", "-f", fmt]
    if backing is not None:
        argv += ["-b", str(backing), "-F", "qcow2"]
    subprocess.run([*argv, str(path), size], check=True)
    return path


def make_test_hypervisor(owner, **extra):
    """A hypervisor row on libvirt's shared test driver, marked online with its capacity
    (16 CPUs, 3 GiB of memory, a 100 GiB pool) as an inventory would."""
    from vps.models import Hypervisor

    server = Server.objects.create(
        name=f"hv-{uuid.uuid4().hex[:8]}",
        address="198.51.100.10",
        transport=Server.Transport.LOCAL,
        owner=owner,
    )
    values = dict(
        server=server,
        uri="test:///default",
        storage_pool="default-pool",
        network="default",
        status=Hypervisor.Status.ONLINE,
        cpus=16,
        memory_mib=3072,
        storage_gib=100,
        memory_ratio=4.0,
    )
    values.update(extra)
    return Hypervisor.objects.create(**values)


@pytest.fixture
def image(tmp_path, admin_user, settings):
    from vps import services

    need_libvirt()
    settings.VAR_DIR = tmp_path
    src = make_image_file(tmp_path / "tiny.qcow2")
    with src.open("rb") as f:
        return services.do_create_image(actor=admin_user, data={"name": "Tiny"}, upload=f)
