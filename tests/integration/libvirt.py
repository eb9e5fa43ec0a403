"""libvirt fixtures: the test driver (in-process, shared state per process under
``test:///default``), a tiny qcow2 image, and a hypervisor row pointing at it."""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from servers.models import Server
from tests.conftest import require_real
from tests.integration.conftest import (
    SSH_HOST,
    free_port,
    start_sshd,
    stop_pidfile,
    wait_port,
    world_readable_tmp,
)


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


LOCK = "/tmp/panel-tests-libvirtd.lock"
QEMU_CONF = 'user = "root"\ngroup = "root"\nstdio_handler = "file"\nremember_owner = 0\n'


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs (a daemon nobody reaps stays a zombie: that has stopped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.fixture(scope="module")
def libvirtd(tmp_path_factory):
    """A private libvirtd (qemu driver, guests under TCG) on its own socket, with a dir
    storage pool of its own; stopped by its pid. qemu runs as root (qemu.conf), the
    ``libvirt-qemu`` user and group only have to exist."""
    import os
    import signal
    import time

    need_libvirt()
    for program in ("/usr/sbin/libvirtd", "/usr/bin/qemu-system-x86_64"):
        if not Path(program).exists():
            require_real(f"{program} is not installed")
    if os.geteuid() != 0:
        require_real("a real libvirtd needs root here")
    # The daemon uses the system's qemu state directories: one at a time on this machine
    # (parallel test workers, other checkouts), held until it has stopped.
    lock = open(LOCK, "w")  # noqa: SIM115 - held for the fixture's lifetime
    fcntl.flock(lock, fcntl.LOCK_EX)
    if subprocess.run(["getent", "group", "libvirt-qemu"], capture_output=True).returncode:
        subprocess.run(["groupadd", "-r", "libvirt-qemu"], check=True)
    if subprocess.run(["getent", "passwd", "libvirt-qemu"], capture_output=True).returncode:
        subprocess.run(
            ["useradd", "-r", "-g", "libvirt-qemu", "-s", "/usr/sbin/nologin", "libvirt-qemu"],
            check=True,
        )
    conf = Path("/etc/libvirt/qemu.conf")
    if not conf.exists() or 'user = "root"' not in conf.read_text():
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(QEMU_CONF)
    base = tmp_path_factory.mktemp("libvirtd")
    (base / "run").mkdir()
    (base / "pool").mkdir()
    (base / "libvirtd.conf").write_text(
        f'unix_sock_dir = "{base}/run"\nunix_sock_rw_perms = "0700"\n'
        'auth_unix_rw = "none"\nauth_unix_ro = "none"\n'
        f'log_outputs = "3:file:{base}/libvirtd.log"\n'
        # No keepalive probes from the daemon: a test process that registered libvirt's
        # event implementation (the events tests) but no longer runs its loop would not
        # answer them, and the daemon would drop every connection idle for 30 s.
        "keepalive_interval = -1\n"
    )
    pid_file = base / "libvirtd.pid"
    _start_daemon(base)
    uri = f"qemu:///system?socket={base}/run/libvirt-sock"
    import libvirt

    conn = _open_when_up(uri)
    pool_name = f"panel-{uuid.uuid4().hex[:8]}"
    pool = conn.storagePoolDefineXML(
        f"<pool type='dir'><name>{pool_name}</name><target><path>{base}/pool</path></target></pool>"
    )
    pool.create()
    info = {"uri": uri, "pool": pool_name, "conn": conn, "dir": base}
    try:
        yield info
    finally:
        conn = info["conn"]  # restart_libvirtd opens a new one
        pool = conn.storagePoolLookupByName(pool_name)
        for dom in conn.listAllDomains():
            if dom.name().startswith("vps-"):
                if dom.isActive():
                    dom.destroy()
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
        pool.destroy()
        pool.undefine()
        conn.close()
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + 15
        while time.monotonic() < end and _running(pid):
            time.sleep(0.1)
        lock.close()


def _start_daemon(base: Path) -> None:
    subprocess.run(
        [
            "/usr/sbin/libvirtd",
            "-d",
            "-f",
            str(base / "libvirtd.conf"),
            "-p",
            str(base / "libvirtd.pid"),
        ],
        check=True,
    )


def _open_when_up(uri: str):
    import time

    import libvirt

    end = time.monotonic() + 20
    while True:
        try:
            return libvirt.open(uri)
        except libvirt.libvirtError:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)


def stop_libvirtd(info: dict) -> None:
    """Stop the fixture's daemon (its guests keep running, as a real restart leaves them)."""
    import os
    import signal
    import time

    pid = int((info["dir"] / "libvirtd.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + 15
    while time.monotonic() < end and _running(pid):
        time.sleep(0.1)
    assert not _running(pid), "libvirtd did not stop"


def start_libvirtd(info: dict) -> None:
    """Start the fixture's daemon again (same configuration, socket and pool)."""
    import contextlib

    import libvirt

    with contextlib.suppress(libvirt.libvirtError):
        info["conn"].close()
    _start_daemon(info["dir"])
    info["conn"] = _open_when_up(info["uri"])


# A tiny guest that answers on its serial console: Debian's cloud kernel (scripts/deps.sh
# puts it here) and an initramfs holding busybox-static, whose init runs a shell on ttyS0.
GUEST_KERNEL = Path("/var/cache/panel-tests/vmlinuz")
GUEST_INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "panel tiny guest: its shell is on the serial console" > /dev/tty0
echo panel-guest-ready
while true; do setsid cttyhack sh; done
"""


def build_guest_initrd(out: Path) -> Path:
    """A gzipped newc initramfs with busybox and the init above."""
    import gzip
    import os

    busybox = shutil.which("busybox") or "/bin/busybox"
    if not Path(busybox).exists():
        require_real("busybox is not installed (busybox-static)")
    root = out.parent / "initrd-root"
    for sub in ("bin", "sbin", "proc", "sys", "dev", "usr/bin", "usr/sbin"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, root / "bin" / "busybox")
    (root / "init").write_text(GUEST_INIT)
    os.chmod(root / "init", 0o755)
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    archive = subprocess.run(
        [str(root / "bin" / "busybox"), "cpio", "-o", "-H", "newc"],
        input=("\n".join(names) + "\n").encode(),
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout
    out.write_bytes(gzip.compress(archive))
    return out


def tiny_guest_xml(name: str, *, kernel: Path, initrd: Path, log: Path, vnc_password: str) -> str:
    """A domain like the panel's (serial on a pty, VNC on 127.0.0.1 with a password) that
    boots the tiny guest directly, its serial output also logged to ``log``."""
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>192</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel><initrd>{initrd}</initrd>
    <cmdline>console=ttyS0 quiet panic=-1</cmdline></os>
  <on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot><on_crash>destroy</on_crash>
  <devices>
    <serial type='pty'><log file='{log}' append='off'/><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <graphics type='vnc' autoport='yes' listen='127.0.0.1' passwd='{vnc_password}'>
      <listen type='address' address='127.0.0.1'/>
    </graphics>
  </devices>
</domain>"""


@pytest.fixture(scope="module")
def tiny_guest_files(tmp_path_factory):
    if not GUEST_KERNEL.exists():
        require_real(f"{GUEST_KERNEL} is missing (scripts/deps.sh downloads it)")
    base = tmp_path_factory.mktemp("guest")
    return {"kernel": GUEST_KERNEL, "initrd": build_guest_initrd(base / "initrd.gz"), "dir": base}


def kill_libvirtd(info: dict) -> None:
    """SIGKILL the fixture's daemon (no cleanup of its own, as a crash or the OOM killer
    leaves it); ``start_libvirtd`` brings it back."""
    import os
    import signal
    import time

    pid = int((info["dir"] / "libvirtd.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    end = time.monotonic() + 15
    while time.monotonic() < end and _running(pid):
        time.sleep(0.05)
    assert not _running(pid), "libvirtd did not die"


HOOK = Path("/etc/libvirt/hooks/qemu")
HOOK_SCRIPT = """#!/bin/sh
# Installed by the panel's tests for one test only: holds a domain's start (the "prepare"
# stage, inside libvirtd's start call) while {gate}/<domain>.hold exists.
cat >/dev/null
if [ "$2" = prepare ] && [ -e "{gate}/$1.hold" ]; then
  touch "{gate}/$1.reached"
  i=0
  while [ -e "{gate}/$1.hold" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
fi
exit 0
"""


@contextlib.contextmanager
def start_gate(info: dict, gate: Path):
    """A real libvirt qemu hook that holds domain starts at a gate: the daemon is restarted
    so it finds the hook, and restarted again after it is removed (a daemon that found a
    hook would fail every start once the script is gone)."""
    import os

    # One left by a test run killed mid-way is ours (it passes everything through) and is
    # replaced; anyone else's is never touched.
    ours = HOOK.exists() and "Installed by the panel's tests" in HOOK.read_text()
    assert ours or not HOOK.exists(), f"{HOOK} exists: not overwriting someone's hook"
    HOOK.parent.mkdir(parents=True, exist_ok=True)
    HOOK.write_text(HOOK_SCRIPT.format(gate=gate))
    os.chmod(HOOK, 0o755)
    try:
        stop_libvirtd(info)
        start_libvirtd(info)
        yield gate
    finally:
        HOOK.unlink(missing_ok=True)
        for held in gate.glob("*.hold"):
            held.unlink()
        pid = int((info["dir"] / "libvirtd.pid").read_text())
        if _running(pid):
            stop_libvirtd(info)
        start_libvirtd(info)


# The remote end of libvirt's SSH transport runs virt-ssh-helper (or nc) against the
# system daemon's socket; this machine's daemon is the test's private one, on its own
# socket. The test sshd's key is held to a forced command (authorized_keys) that joins the
# channel to that socket instead, as the helper would.
BRIDGE = """import os, socket, sys, threading
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
def up():
    while data := os.read(0, 65536):
        s.sendall(data)
    s.shutdown(socket.SHUT_WR)
threading.Thread(target=up, daemon=True).start()
while data := s.recv(65536):
    os.write(1, data)
"""


@pytest.fixture(scope="module")
def libvirt_sshd(libvirtd):  # noqa: F811
    """A loopback sshd whose key reaches the private libvirtd as the system one."""
    base = world_readable_tmp("uhp-libvirt-sshd-")
    port = free_port(SSH_HOST)
    daemon = start_sshd(base, SSH_HOST, port)
    socket_path = libvirtd["uri"].split("socket=", 1)[1]
    (base / "bridge.py").write_text(BRIDGE)
    python = shutil.which("python3") or "/usr/bin/python3"
    (base / "authorized_keys").write_text(
        f'command="{python} {base}/bridge.py {socket_path}",environment="HOME={base}/home" '
        f"{daemon.public_key}\n"
    )
    wait_port(SSH_HOST, port)
    yield daemon
    stop_pidfile(base / "sshd.pid")
    shutil.rmtree(base, ignore_errors=True)
