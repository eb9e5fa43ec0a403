"""App sites without a server: the checks on start commands and environment variables
(property tests), secrets masked and merged, ports allocated per server and never shared,
plans, the rendered supervisord program (parsed by supervisord's own parser) and systemd
unit (``systemd-analyze verify`` where installed), and the portal's app section."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given, settings
from hypothesis import strategies as st

from core.models import AuditEntry, Operation
from servers.engine import profile_for
from servers.models import Server
from tests.conftest import login
from websites import appsites, plans, services
from websites.appservices import CHECK_SCRIPT
from websites.models import Website

SHELLISH = ";|&$`<>(){}[]*?!~#'\"\\%\n\t\r "


@given(st.text(max_size=80))
@settings(max_examples=300, deadline=None)
def test_start_command_accepts_only_plain_words(value):
    try:
        command = appsites.validate_start_command(value)
    except ValidationError:
        return
    words = command.split(" ")
    assert all(words) and not words[0].startswith("-")
    assert not any(c in SHELLISH.replace(" ", "") for c in command)
    assert "\n" not in command and "%" not in command


@pytest.mark.parametrize(
    "value",
    ["node server.js; rm -rf /", "node $(id)", "node `id`", "a|b", "-x", "a > b", "%(ENV_X)s", ""],
)
def test_start_command_refuses_shell(value):
    with pytest.raises(ValidationError):
        appsites.validate_start_command(value)


def test_start_command_is_normalised():
    assert appsites.validate_start_command("  gunicorn   app:app -b 127.0.0.1 ") == (
        "gunicorn app:app -b 127.0.0.1"
    )


@given(st.dictionaries(st.text(max_size=12), st.text(max_size=30), max_size=4))
@settings(max_examples=300, deadline=None)
def test_env_accepts_only_safe_names_and_one_line_values(data):
    try:
        env = appsites.check_env(data)
    except ValidationError:
        return
    for name, value in env.items():
        assert appsites.ENV_NAME.fullmatch(name) and name not in ("PORT", "HOST")
        assert not any(ord(c) < 32 or ord(c) == 127 for c in value)


@pytest.mark.parametrize(
    "data",
    [{"a-b": "1"}, {"X": "line\nbreak"}, {"X": "nul\x00"}, {"PORT": "80"}, {"1X": "y"}, {"X": 1}],
)
def test_env_refuses(data):
    with pytest.raises(ValidationError):
        appsites.check_env(data)


def test_env_edits_merge_and_the_mask_keeps_secrets():
    stored = {"A": "secret", "B": "two"}
    assert appsites.merge_env(stored, {"A": appsites.MASK, "B": None, "C": "3"}) == {
        "A": "secret",
        "C": "3",
    }
    # The mask is never stored as a value of its own for a new name... it is a value then.
    assert appsites.merge_env({}, {"N": appsites.MASK}) == {"N": appsites.MASK}


@pytest.fixture
def server(admin_user):
    return Server.objects.create(
        name="apps1",
        address="93.184.216.40",
        owner=admin_user,
        profile={"app_ports": "20000-20002"},
        facts={"services": {"nginx": True, "supervisord": True}},
    )


def _app(server, owner, domain, **extra):
    data = {
        "domain": domain,
        "server": server,
        "owner": owner,
        "kind": "node",
        "start_command": "node server.js",
        **extra,
    }
    return services.do_create_website(actor=server.owner, data=data)


@pytest.mark.django_db
def test_ports_are_unique_per_server_and_freed_with_the_site(server, customer):
    sites = [_app(server, customer, f"a{n}.example.com") for n in range(3)]
    assert sorted(s.app_port for s in sites) == [20000, 20001, 20002]
    with pytest.raises(ValidationError, match="Every app port"):
        _app(server, customer, "a4.example.com")
    Website.objects.filter(pk=sites[1].pk).delete()  # what the delete operation ends with
    assert _app(server, customer, "a5.example.com").app_port == 20001
    # Another server has its own range.
    other = Server.objects.create(
        name="apps2", address="93.184.216.41", owner=server.owner, facts=server.facts
    )
    assert _app(other, customer, "b.example.com").app_port == 20000


@pytest.mark.django_db
def test_env_is_encrypted_masked_and_never_audited(server, customer):
    site = _app(server, customer, "env.example.com", app_env={"TOKEN": "s3cr3t-value"})
    raw = Website.objects.filter(pk=site.pk).values_list("app_env", flat=True).get()
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT app_env FROM websites_website WHERE id = %s", [site.pk])
        stored = cur.fetchone()[0]
    assert "s3cr3t" not in stored and json.loads(raw) == {"TOKEN": "s3cr3t-value"}
    api = login(customer)
    data = api.get(f"/api/v1/websites/{site.uuid}/").json()
    assert data["app_env"] == {"TOKEN": "********"} and data["app_port"] == 20000
    resp = api.patch(
        f"/api/v1/websites/{site.uuid}/",
        {"app_env": {"TOKEN": "********", "OTHER": "new-secret"}},
        content_type="application/json",
    )
    assert resp.status_code == 200, resp.content
    site.refresh_from_db()
    assert site.env_vars() == {"OTHER": "new-secret", "TOKEN": "s3cr3t-value"}
    changes = str(list(AuditEntry.objects.values_list("changes", flat=True)))
    assert "s3cr3t" not in changes and "new-secret" not in changes and "OTHER" in changes


@pytest.mark.django_db
def test_kinds_and_fields(server, customer, admin_user):
    with pytest.raises(ValidationError) as exc:
        _app(server, customer, "x.example.com", start_command="")
    assert "start_command" in exc.value.message_dict
    with pytest.raises(ValidationError) as exc:
        services.do_create_website(
            actor=admin_user,
            data={
                "domain": "s.example.com",
                "server": server,
                "owner": customer,
                "kind": "static",
                "app_env": {"A": "b"},
            },
        )
    assert "app_env" in exc.value.message_dict
    bare = Server.objects.create(
        name="bare",
        address="93.184.216.42",
        owner=admin_user,
        facts={"services": {"nginx": True, "supervisord": False}},
    )
    with pytest.raises(ValidationError, match="neither supervisord nor systemd"):
        _app(bare, customer, "y.example.com")


@pytest.mark.django_db
def test_plans_allow_app_kinds_and_cap_memory(admin_user, reseller, customer, server):
    parent = plans.do_create_plan(
        actor=admin_user, data={"name": "R", "kinds": "node static", "app_memory_mb": 512}
    )
    plans.do_subscribe(reseller, parent, actor=admin_user)
    with pytest.raises(ValidationError) as exc:
        plans.do_create_plan(actor=reseller, data={"name": "Big", "app_memory_mb": 1024})
    assert "app_memory_mb" in exc.value.message_dict
    mine = plans.do_create_plan(
        actor=reseller, data={"name": "Small", "kinds": "static", "app_memory_mb": 128}
    )
    plans.do_subscribe(customer, mine, actor=reseller)
    with pytest.raises(ValidationError, match="does not allow node"):
        plans.check_allowed(customer, kind="node")


def _site(**extra) -> Website:
    return Website(
        uuid=uuid.UUID("0123456789abcdef0123456789abcdef"),
        domain="app.example.com",
        kind="python",
        start_command="gunicorn -b 127.0.0.1:8000 app:app",
        app_port=20005,
        **extra,
    )


def test_supervisor_program_passes_supervisords_own_parser(tmp_path):
    if not shutil.which("supervisord"):
        pytest.skip("supervisor is not installed")
    profile = profile_for(Server(profile={"webroot_base": str(tmp_path)}))
    (tmp_path / "root" / "logs").mkdir(parents=True)
    text = appsites.render_supervisor_program(
        _site(), profile, "root", revision="abcd", memory_mb=256
    )
    assert "user=root\n" in text and "autorestart=true\n" in text
    assert "command=/usr/bin/python3 /usr/local/lib/hosting-panel/app-run " in text
    assert text.count("\ncommand=") == 1
    main = tmp_path / "supervisord.conf"
    main.write_text(f"[include]\nfiles = {tmp_path}/conf.d/*.conf\n")
    payload = json.dumps({f"{tmp_path}/conf.d/a.conf": text, f"{tmp_path}/conf.d/b.conf": "x"})
    res = subprocess.run(
        ["/usr/bin/python3", "-c", CHECK_SCRIPT, str(main), f"{tmp_path}/conf.d"],
        input=payload,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"@@bad {tmp_path}/conf.d/b.conf" in res.stdout  # only the broken one
    assert "a.conf" not in res.stdout
    stopped = appsites.render_supervisor_program(
        _site(app_running=False), profile, "root", revision="abcd", memory_mb=256
    )
    assert "autostart=false\n" in stopped


def test_systemd_unit(tmp_path):
    profile = profile_for(Server(profile={"webroot_base": str(tmp_path)}))
    text = appsites.render_systemd_unit(_site(), profile, "root", revision="abcd", memory_mb=300)
    assert "MemoryMax=300M\n" in text and "User=root\n" in text and "Restart=always\n" in text
    assert " abcd 0 -- gunicorn -b 127.0.0.1:8000 app:app\n" in text  # the cgroup limits
    if not shutil.which("systemd-analyze"):
        return  # the text above is what can be checked
    (tmp_path / "root" / "sites" / "app.example.com" / "app").mkdir(parents=True)
    text = text.replace(profile.app_runner, "/bin/true")
    unit = tmp_path / "panel-app-0123456789abcdef.service"
    unit.write_text(text)
    res = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0 and not res.stdout.strip() and not res.stderr.strip(), (
        res.stdout + res.stderr
    )


@pytest.mark.django_db
def test_portal_app_section_env_form_and_actions(server, customer, mallory):
    site = _app(server, customer, "portal.example.com", app_env={"SECRET_KEY": "abc123"})
    client = login(customer)
    page = client.get(f"/websites/{site.uuid}/").content.decode()
    assert 'data-testid="app"' in page and "127.0.0.1:20000" in page
    assert "SECRET_KEY=********" in page and "abc123" not in page
    resp = client.post(f"/websites/{site.uuid}/app/env/", {"env": "SECRET_KEY=********\nDEBUG=0\n"})
    assert resp.status_code == 302
    site.refresh_from_db()
    assert site.env_vars() == {"DEBUG": "0", "SECRET_KEY": "abc123"}
    client.post(f"/websites/{site.uuid}/app/env/", {"env": "DEBUG=1"})
    site.refresh_from_db()
    assert site.env_vars() == {"DEBUG": "1"}  # a removed line removes the variable
    client.post(f"/websites/{site.uuid}/app/env/", {"env": "bad-name=1"})
    site.refresh_from_db()
    assert site.env_vars() == {"DEBUG": "1"}
    client.post(f"/websites/{site.uuid}/app/command/", {"start_command": "node a.js; id"})
    site.refresh_from_db()
    assert site.start_command == "node server.js"
    before = Operation.objects.count()
    assert client.post(f"/websites/{site.uuid}/app/restart/").status_code == 302
    assert Operation.objects.filter(kind="website.app_restart").count() == 1
    resp = client.post(f"/websites/{site.uuid}/app/stop/")
    assert resp.status_code == 302
    site.refresh_from_db()
    assert site.app_running is False and Operation.objects.count() == before + 2
    # Someone else's site is out of reach.
    other = login(mallory)
    assert other.post(f"/websites/{site.uuid}/app/start/").status_code == 404
    assert other.post(f"/api/v1/websites/{site.uuid}/restart/").status_code == 404
    # The API's actions: only for app sites.
    api = login(customer)
    assert api.post(f"/api/v1/websites/{site.uuid}/app-status/").status_code == 202
    static = services.do_create_website(
        actor=server.owner,
        data={"domain": "plain.example.com", "server": server, "owner": customer},
    )
    assert api.post(f"/api/v1/websites/{static.uuid}/start/").status_code == 400


@pytest.mark.django_db
def test_wizard_creates_an_app_site_with_its_start_command(server, customer, admin_user):
    plan = plans.do_create_plan(actor=admin_user, data={"name": "Apps", "websites": 2})
    plans.do_subscribe(customer, plan, actor=admin_user)
    server.owner = customer.reseller
    server.save()
    client = login(customer)
    data = {
        "domain": "wiz.example.com",
        "aliases": "",
        "server": str(server.pk),
        "kind": "node",
        "php_version": "",
        "upstream": "",
        "start_command": "node  app.js; id",
        "www_redirect": "",
        "step": "1",
        "go": "2",
    }
    page = client.post("/websites/add/", data, HTTP_HX_REQUEST="true").content.decode()
    assert "no shell" in page and not Website.objects.exists()  # refused at its step
    data.update(start_command="node  app.js", step="2", go="3")
    page = client.post("/websites/add/", data, HTTP_HX_REQUEST="true").content.decode()
    assert "<code>node app.js</code>" in page  # the review shows it as it will be stored
    client.post("/websites/add/", {**data, "step": "3", "go": "create"}, HTTP_HX_REQUEST="true")
    site = Website.objects.get(domain="wiz.example.com")
    assert site.kind == "node" and site.start_command == "node app.js" and site.app_port


@pytest.mark.django_db
def test_admin_shows_the_app_but_never_its_environment(server, customer, admin_user):
    site = _app(server, customer, "adm.example.com", app_env={"TOKEN": "admin-never-sees"})
    page = login(admin_user).get(f"/admin/websites/website/{site.pk}/change/").content.decode()
    assert "node server.js" in page and "20000" in page
    assert "admin-never-sees" not in page
