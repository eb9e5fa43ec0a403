"""What certificates contribute to a server's managed files: per site a private key (mode
0600) and its certificate chain (0644), in their own unit ``certificate:<uuid>``.

The vhost names these files only once they are live (``Certificate.installed``): nginx
refuses a configuration whose certificate file is missing, and the engine tests a staged
vhost against the live files. So issuing is two applies in one operation: the files, then
the site (websites/certificates/tasks.py).
"""

from __future__ import annotations

from django.utils import timezone

from servers.engine import ManagedFile, ProfileKey, Service, ServiceRun, Step, StepResult
from websites.certificates.models import Certificate

# Each (key, chain) pair must hold the same public key: run on the server after the swap, a
# mismatch rolls the unit back to its previous files (modes kept).
MATCH_SCRIPT = """
while [ $# -gt 1 ]; do
  k=$(openssl pkey -in "$1" -pubout 2>&1) || { echo "$1: $k"; exit 1; }
  c=$(openssl x509 -in "$2" -noout -pubkey 2>&1) || { echo "$2: $c"; exit 1; }
  [ "$k" = "$c" ] || { echo "$1 does not belong to $2"; exit 1; }
  shift 2
done
"""


def file_paths(profile, domain: str) -> tuple[str, str]:
    base = profile.tls_dir.rstrip("/")
    return f"{base}/{domain}.key", f"{base}/{domain}.crt"


class CertificateFiles:
    unit_prefix = "certificate:"
    profile_keys = ()  # the TLS keys are the service's: services stay registered

    def files(self, server, profile, units):
        certs = (
            Certificate.objects.filter(website__server=server)
            .exclude(fullchain="")
            .exclude(website__status="deleting")  # removed in the deletion's own apply
            .select_related("website")
        )
        if units is not None:
            certs = certs.filter(uuid__in=[u.removeprefix(self.unit_prefix) for u in units])
        for cert in certs.order_by("website__domain"):
            key_path, crt_path = file_paths(profile, cert.website.domain)
            yield ManagedFile(
                path=key_path,
                content=cert.private_key.encode(),
                service=TlsFilesService.name,
                unit=cert.unit,
                mode=0o600,
            )
            yield ManagedFile(
                path=crt_path,
                content=cert.fullchain.encode(),
                service=TlsFilesService.name,
                unit=cert.unit,
                mode=0o644,
            )

    def report(self, server, ok: set[str], failed: dict[str, str]) -> None:
        ids = [u.removeprefix(self.unit_prefix) for u in ok]
        if ids:
            Certificate.objects.filter(uuid__in=ids, installed=False).update(installed=True)
        for unit, why in failed.items():
            Certificate.objects.filter(uuid=unit.removeprefix(self.unit_prefix)).update(
                last_error=f"Installing the files failed: {why}"[:4000],
                updated_at=timezone.now(),
            )


class TlsFilesService(Service):
    """Key and chain files: nothing to reload (the vhost apply that follows reloads nginx);
    verified after the swap by comparing each key's public half with its certificate's."""

    name = "tls-files"
    reload_order = 40  # before nginx, which reads them
    profile_keys = (
        ProfileKey("tls_dir", "/etc/nginx/panel-tls", "path", "Private keys and chains."),
        ProfileKey(
            "nginx_tls_listen", "443", "listen", "Port or address:port HTTPS vhosts listen on."
        ),
        ProfileKey(
            "acme_challenge_dir",
            "/var/lib/hosting-panel/acme-challenge",
            "path",
            "Served at /.well-known/acme-challenge/ on every site (HTTP-01).",
        ),
        ProfileKey(
            "public_addresses",
            "",
            "text",
            "Addresses (space separated) a site's names must resolve to before a certificate "
            "is ordered; empty: the server's address.",
        ),
    )
    validated_by_jobs = True

    def _pairs(self, run: ServiceRun) -> list[tuple[str, str, str]]:
        by_unit: dict[str, dict[str, str]] = {}
        for path, f in run.live_files().items():
            by_unit.setdefault(f.unit, {})["key" if path.endswith(".key") else "crt"] = path
        return [(unit, p["key"], p["crt"]) for unit, p in sorted(by_unit.items()) if len(p) == 2]

    def verify_step(self, run: ServiceRun) -> Step | None:
        pairs = self._pairs(run)
        if not pairs:
            return None
        argv = ["sh", "-c", MATCH_SCRIPT, "tls-match"]
        for _unit, key, crt in pairs:
            argv += [key, crt]
        return Step(argv, 60)

    def verify_errors(self, run: ServiceRun, result: StepResult) -> dict[str, str]:
        if result.ok:
            return {}
        out = result.output.strip()[:2000]
        named = {u for u, key, crt in self._pairs(run) if key in out or crt in out}
        return {u: out for u in (named or run.units())}
