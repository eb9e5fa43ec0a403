"""Basic auth on paths (option ``auth_paths``): passwords become bcrypt hashes crypt(3)
accepts, users sent back without a password keep theirs, hashes never leave through the API
or the audit, the vhost guards every location below a protected path, and the site page's
forms go through the service."""

from __future__ import annotations

import warnings

import pytest
from django.core.exceptions import ValidationError

from core.models import AuditEntry
from servers.models import Server
from tests.conftest import login
from websites.models import Website
from websites.options import hash_password, parse_options, with_password_hashes
from websites.vhost import SiteEnv, auth_file_name, render_vhost

pytestmark = pytest.mark.django_db
HASH = "$2b$08$" + "a" * 53


def test_the_hash_is_bcrypt_and_the_system_crypt_checks_it():
    hashed = hash_password("correct horse")
    assert hashed.startswith("$2b$08$")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # the system's crypt(3): what nginx calls

        assert crypt.crypt("correct horse", hashed) == hashed  # libxcrypt, as nginx uses
        assert crypt.crypt("wrong horse", hashed) != hashed


@pytest.mark.parametrize("password", ["short", "x" * 73, "tab\there!", "new\nline!", 12345678])
def test_bad_passwords_are_refused(password):
    with pytest.raises(ValidationError):
        hash_password(password)


def test_users_without_a_password_keep_their_hash_and_strange_hashes_are_refused():
    stored = {"auth_paths": [{"path": "/a", "users": [{"name": "bob", "hash": HASH}]}]}
    kept = with_password_hashes(
        {"auth_paths": [{"path": "/a", "users": [{"name": "bob"}]}]}, stored
    )
    assert kept == stored
    fresh = with_password_hashes(
        {"auth_paths": [{"path": "/a", "users": [{"name": "bob", "password": "new pass 1"}]}]},
        stored,
    )
    assert fresh["auth_paths"][0]["users"][0]["hash"] != HASH
    for users in ([{"name": "eve"}], [{"name": "bob", "hash": "$2b$08$" + "b" * 53}]):
        with pytest.raises(ValidationError):
            with_password_hashes({"auth_paths": [{"path": "/a", "users": users}]}, stored)
    # Another path's user is another user.
    with pytest.raises(ValidationError):
        with_password_hashes({"auth_paths": [{"path": "/b", "users": [{"name": "bob"}]}]}, stored)


@pytest.mark.parametrize(
    "entry",
    [
        {"path": "/", "users": [{"name": "bob", "hash": HASH}]},
        {"path": "/a;b", "users": [{"name": "bob", "hash": HASH}]},
        {"path": "/a", "users": []},
        {"path": "/a", "users": [{"name": "b:ob", "hash": HASH}]},
        {"path": "/a", "users": [{"name": "bob", "hash": HASH + "\n"}]},
        {"path": "/a", "users": [{"name": "bob", "hash": "$1$abc$def"}]},
        {"path": "/a", "users": [{"name": "bob", "hash": HASH}, {"name": "bob", "hash": HASH}]},
        {"path": "/.well-known/acme-challenge/x", "users": [{"name": "bob", "hash": HASH}]},
    ],
)
def test_bad_protected_paths_are_refused(entry):
    with pytest.raises(ValidationError):
        parse_options({"auth_paths": [entry]})


def render(kind="php", **options):
    site = Website(domain="guard.example.com", kind=kind, php_version="8.2", options=options)
    env = SiteEnv(root="/srv/x/public", php_socket="/run/x.sock", auth_dir="/home/u/htpasswd")
    return render_vhost(site, "127.0.0.1:80", "/srv", env=env)[0]


def test_the_vhost_guards_every_location_below_a_protected_path():
    text = render(
        auth_paths=[{"path": "/admin", "users": [{"name": "bob", "hash": HASH}]}],
        proxies=[{"path": "/admin/api", "upstream": "http://8.8.8.8"}],
        static_cache_days=3,
    )
    pwfile = f"/home/u/htpasswd/{auth_file_name('guard.example.com', '/admin')}"
    guarded = text.split("location ^~ /admin {")[1]
    # PHP and static files are nested: ^~ keeps the server's regex locations away.
    assert guarded.index("auth_basic_user_file") < guarded.index(r"location ~ \.php$")
    assert text.count(f"auth_basic_user_file {pwfile};") == 2  # the path and the proxy below
    assert "$2b$" not in text


def test_no_password_file_no_protected_path():
    site = Website(
        domain="guard.example.com",
        kind="static",
        options={"auth_paths": [{"path": "/a", "users": [{"name": "bob", "hash": HASH}]}]},
    )
    with pytest.raises(ValidationError):
        render_vhost(site, "127.0.0.1:80", "/srv", env=SiteEnv(root="/srv/x/public"))


def test_the_site_page_protects_a_path_adds_users_and_removes_them(reseller, customer, mallory):
    server = Server.objects.create(name="web", address="93.184.216.34", owner=reseller)
    site = Website.objects.create(domain="guard.example.com", server=server, owner=customer)
    page = f"/websites/{site.uuid}/"
    client = login(customer)
    assert 'data-testid="auth-protect-form"' in client.get(page).content.decode()
    form = {"path": "/admin", "name": "bob", "password": "correct horse"}
    assert client.post(f"{page}auth/protect/", form).status_code == 302
    assert login(mallory).post(f"{page}auth/protect/", form).status_code == 404
    site.refresh_from_db()
    (entry,) = site.options["auth_paths"]
    assert entry["path"] == "/admin" and entry["users"][0]["hash"].startswith("$2b$")
    html = client.get(page).content.decode()
    assert "<code>/admin</code>" in html and ">bob</code>" in html and "$2b$" not in html

    client.post(f"{page}auth/user/", {"path": "/admin", "name": "ann", "password": "ann pass 1"})
    client.post(f"{page}auth/user/remove/", {"path": "/admin", "name": "bob"})
    site.refresh_from_db()
    assert [u["name"] for u in site.options["auth_paths"][0]["users"]] == ["ann"]
    # The last user cannot go: the path would lock everyone out; remove the protection.
    client.post(f"{page}auth/user/remove/", {"path": "/admin", "name": "ann"})
    site.refresh_from_db()
    assert [u["name"] for u in site.options["auth_paths"][0]["users"]] == ["ann"]
    client.post(f"{page}auth/unprotect/", {"path": "/admin"})
    site.refresh_from_db()
    assert "auth_paths" not in site.options

    entries = AuditEntry.objects.filter(action="website.update")
    assert entries.count() == 4
    assert all(
        "$2b$" not in str(e.changes) and "correct horse" not in str(e.changes) for e in entries
    )


def test_the_api_takes_passwords_and_shows_names(reseller, customer):
    server = Server.objects.create(name="web", address="93.184.216.34", owner=reseller)
    site = Website.objects.create(domain="guard.example.com", server=server, owner=customer)
    url = f"/api/v1/websites/{site.uuid}/"
    users = [{"name": "bob", "password": "correct horse"}]
    body = {"options": {"gzip": True, "auth_paths": [{"path": "/admin", "users": users}]}}
    resp = login(customer).patch(url, body, content_type="application/json")
    assert resp.status_code == 200, resp.content
    shown = resp.json()["options"]
    assert shown == {"gzip": True, "auth_paths": [{"path": "/admin", "users": [{"name": "bob"}]}]}
    bad = {"options": {"auth_paths": [{"path": "/a b", "users": users}]}}
    resp = login(customer).patch(url, bad, content_type="application/json")
    assert resp.status_code == 400 and "auth_paths[0].path" in resp.content.decode()


@pytest.mark.parametrize(
    "auth_paths",
    [
        [{"path": [], "users": [{"name": "bob"}]}],
        [{"path": "/a", "users": [{"name": {}, "password": 5}]}],
        [None, "x", 1],
        {"path": "/a"},
    ],
)
def test_malformed_auth_paths_are_a_400(reseller, customer, auth_paths):
    server = Server.objects.create(name="web", address="93.184.216.34", owner=reseller)
    site = Website.objects.create(domain="guard.example.com", server=server, owner=customer)
    body = {"options": {"auth_paths": auth_paths}}
    resp = login(customer).patch(
        f"/api/v1/websites/{site.uuid}/", body, content_type="application/json"
    )
    assert resp.status_code == 400, resp.content
