"""The TLS pieces of a site's vhost: the ACME challenge location in every server block and,
once the site's certificate files are live, ``listen ... ssl``, HTTP/2, the certificate
paths, HSTS and the HTTP to HTTPS redirect.

``websites.vhost`` hands over the text it rendered (``with_tls``); this module adds to it, so
the two evolve separately. What is added comes from checked values only: the site's domain
(validated), the server profile's paths and listen values (validated by kind) and booleans
and numbers of the typed options.
"""

from __future__ import annotations

import re

CHALLENGE_PATH = "/.well-known/acme-challenge/"
DEFAULT_CHALLENGE_DIR = "/var/lib/hosting-panel/acme-challenge"


def challenge_location(challenge_dir: str) -> str:
    return (
        f"    location ^~ {CHALLENGE_PATH} {{\n"
        f"        alias {challenge_dir.rstrip('/')}/;\n"
        f"        default_type text/plain;\n"
        f"        try_files $uri =404;\n"
        f"    }}\n"
    )


def _server_settings(site):
    """(challenge dir, TLS listen, key path, chain path, fingerprint) for the site; the
    last three are None while it has no certificate live on its server. One query for a
    saved site (its server's profile and its certificate, joined)."""
    from types import SimpleNamespace

    from servers.engine import profile_for
    from websites.certificates.apply import file_paths
    from websites.models import Website

    fingerprint = None
    if site.pk is not None:
        row = (
            Website.objects.filter(pk=site.pk)
            .values_list(
                "server__profile",
                "certificate__fingerprint",
                "certificate__installed",  # only ever set once its files are written
            )
            .first()
        )
        if row is None:
            return DEFAULT_CHALLENGE_DIR, None, None, None, None
        server_profile, fp, installed = row
        profile = profile_for(SimpleNamespace(profile=server_profile))
        if installed:
            fingerprint = fp
    elif site.server_id is not None:  # a site rendered before it is saved
        profile = profile_for(site.server)
    else:
        return DEFAULT_CHALLENGE_DIR, None, None, None, None
    if fingerprint is None:
        return profile.acme_challenge_dir, None, None, None, None
    key, crt = file_paths(profile, site.domain)
    return profile.acme_challenge_dir, profile.nginx_tls_listen, key, crt, fingerprint


def with_tls(site, body: str, listen: str, options) -> str:
    """``body``: the site's server blocks, each closing with a line holding only "}"."""
    challenge_dir, tls_listen, key, crt, fingerprint = _server_settings(site)
    challenge = challenge_location(challenge_dir)
    if tls_listen is None:
        return _before_closing(body, challenge)
    tls = (
        f"    listen {tls_listen} ssl http2;\n"
        f"    ssl_certificate {crt};\n"
        f"    ssl_certificate_key {key};\n"
        f"    # certificate sha256 {fingerprint[:16]}\n"  # a renewal changes the vhost
    )
    plain = f"    listen {listen};\n"
    blocks = re.split(r"(?<=\n\}\n)", body)
    head = ""
    if not blocks[0].lstrip().startswith("server"):
        head, _, rest = blocks[0].partition("server {")
        blocks[0] = "server {" + rest
    out = []
    for i, block in enumerate(blocks):
        if not block.strip():
            continue
        main = i == 0
        if main and options.https_redirect:
            block = block.replace(plain, tls, 1)
        else:
            block = block.replace(plain, plain + tls, 1)
        if main and options.hsts_max_age:
            block = block.replace(
                tls,
                tls + f'    add_header Strict-Transport-Security "max-age={options.hsts_max_age}'
                f'" always;\n',
                1,
            )
        out.append(block)
    text = head + "".join(out)
    if options.https_redirect:
        names = _server_names(blocks[0])
        text += (
            "server {\n"
            f"{plain}"
            f"    server_name {names};\n"
            "    location / {\n"
            "        return 301 https://$host$request_uri;\n"
            "    }\n"
            "}\n"
        )
    return _before_closing(text, challenge)


def _server_names(block: str) -> str:
    found = re.search(r"^    server_name ([^;]+);$", block, flags=re.M)
    return found.group(1) if found else "_"


def _before_closing(text: str, inner: str) -> str:
    return re.sub(r"^\}$", lambda _m: inner + "}", text.rstrip() + "\n", flags=re.M)
