"""The catch-all vhost: nginx hands a request for a name no site claims to the
``default_server`` of its address and port, or else to the first server block it read, which
would be some customer's site. The panel writes its own default server on every server it
serves sites from, so an unknown ``Host:`` gets a neutral 404 page over HTTP and, once the
server serves HTTPS, an unknown SNI name has its TLS handshake refused
(``ssl_reject_handshake``) instead of receiving another site's certificate.

It is its own unit (``nginx-default:server``), applied with every website operation; an
unchanged file costs nothing (the engine compares it with what it wrote).
"""

from __future__ import annotations

from servers.engine import ManagedFile, Probe, ProfileKey, UnitFailed
from websites.models import Website
from websites.nginx import with_probe

UNIT = "nginx-default:server"
PROBE_HOST = "unknown-name.invalid"  # reserved (RFC 2606): never a site's name
NEUTRAL_PAGE = "No website is configured for this name.\\n"


def render_default(listen: str, tls_listen: str | None) -> tuple[str, str]:
    tls = ""
    if tls_listen:
        tls = f"    listen {tls_listen} ssl http2 default_server;\n    ssl_reject_handshake on;\n"
    body = (
        "# Managed by the hosting panel: names no site claims end here.\n"
        "server {\n"
        f"    listen {listen} default_server;\n"
        f"{tls}"
        "    server_name _;\n"
        "    access_log off;\n"
        "    location / {\n"
        "        default_type text/plain;\n"
        f'        return 404 "{NEUTRAL_PAGE}";\n'
        "    }\n"
        "}\n"
    )
    return with_probe(body, listen)


def serves_tls(server) -> bool:
    """HTTPS is open on the server once one of its sites has its certificate files live."""
    return (
        Website.objects.filter(server=server, certificate__installed=True)
        .exclude(status=Website.Status.DELETING)
        .exists()
    )


class DefaultServerFiles:
    unit_prefix = "nginx-default:"
    profile_keys = (
        ProfileKey(
            "nginx_default_server",
            "panel",
            "text",
            "panel: the panel writes the catch-all default_server; own: nginx.conf has its "
            "own default server for every address sites listen on (the panel writes none).",
        ),
    )

    def files(self, server, profile, units):
        if units is not None and UNIT not in units:
            return
        mode = profile.nginx_default_server
        if mode not in ("panel", "own"):
            yield UnitFailed(UNIT, f"nginx_default_server is {mode!r}: panel or own.")
            return
        if mode == "own" or not Website.objects.filter(server=server).exists():
            return  # a server without sites keeps its nginx as it is (the file is removed)
        tls = profile.nginx_tls_listen if serves_tls(server) else None
        text, revision = render_default(profile.nginx_listen, tls)
        yield ManagedFile(
            path=f"{profile.nginx_sites_dir.rstrip('/')}/000-panel-default.conf",
            content=text.encode(),
            service="nginx",
            unit=UNIT,
            probe=Probe(hosts=(PROBE_HOST,), revision=revision),
        )

    def report(self, server, ok: set[str], failed: dict[str, str]) -> None:
        """Nothing to record on a row: a failure is in the operation's result and log."""
