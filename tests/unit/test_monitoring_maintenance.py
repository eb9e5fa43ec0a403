"""Maintenance windows: when a window is open (boundaries, weekly recurrence, time zones
across summer time), the servers' status while it is, the services' checks, and the
portal and API (visibility, flat query counts, audit)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError

from core.models import AuditEntry, LiveEvent
from monitoring import services
from monitoring.maintenance import apply_windows, next_start, occurrence, state
from monitoring.models import MaintenanceWindow, ServerMonitor
from servers.models import Server
from tests.conftest import login, queries_for

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 1, 3, 22, 0, tzinfo=UTC)  # a Saturday


def _window(**kw) -> MaintenanceWindow:
    base = {"name": "w", "starts_at": T0, "ends_at": T0 + timedelta(hours=4)}
    return MaintenanceWindow(**{**base, **kw})


def test_a_one_off_window_is_open_from_its_start_to_just_before_its_end():
    w = _window()
    assert occurrence(w, T0 - timedelta(seconds=1)) is None
    assert occurrence(w, T0) == (T0, T0 + timedelta(hours=4))
    assert occurrence(w, T0 + timedelta(hours=4) - timedelta(microseconds=1))
    assert occurrence(w, T0 + timedelta(hours=4)) is None
    assert occurrence(w, T0 + timedelta(weeks=1)) is None  # not repeated
    assert state(w, T0 - timedelta(days=1)) == "scheduled"
    assert state(w, T0 + timedelta(hours=5)) == "ended" and next_start(w, T0) is None


def test_a_weekly_window_repeats_at_its_boundaries_and_across_midnight():
    w = _window(repeat="weekly")  # Saturday 22:00 to Sunday 02:00 UTC
    week = timedelta(weeks=1)
    assert occurrence(w, T0 - week) is None  # nothing before the first
    for k in (1, 2, 52):
        start = T0 + k * week
        assert occurrence(w, start) == (start, start + timedelta(hours=4))
        assert occurrence(w, start + timedelta(hours=3, minutes=59)) is not None  # Sunday
        assert occurrence(w, start + timedelta(hours=4)) is None
        assert occurrence(w, start - timedelta(seconds=1)) is None
    assert occurrence(w, T0 + timedelta(days=3)) is None
    assert next_start(w, T0 + timedelta(hours=1)) == T0 + week
    assert state(w, T0 + timedelta(days=300)) == "scheduled"


def test_a_weekly_window_keeps_its_local_time_across_summer_time():
    # Sundays 02:00-04:00 in Berlin: 01:00-03:00 UTC in winter, 00:00-02:00 UTC in summer.
    start = datetime(2026, 3, 22, 1, 0, tzinfo=UTC)  # 02:00 CET, a week before the change
    w = _window(
        repeat="weekly",
        time_zone="Europe/Berlin",
        starts_at=start,
        ends_at=start + timedelta(hours=2),
    )
    summer = datetime(2026, 4, 5, 0, 0, tzinfo=UTC)  # 02:00 CEST
    begin, end = occurrence(w, summer + timedelta(minutes=30))
    assert (begin, end) == (summer, summer + timedelta(hours=2))
    assert occurrence(w, summer - timedelta(minutes=1)) is None
    assert occurrence(w, datetime(2026, 4, 5, 2, 30, tzinfo=UTC)) is None  # 04:30 local
    # 29 March, the change itself: 02:00 does not exist, the window opens when the clock
    # jumps (03:00 CEST, 01:00 UTC) and still ends at 04:00 CEST.
    change = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert next_start(w, start + timedelta(hours=3)) == change
    assert occurrence(w, change) == (change, change + timedelta(hours=1))
    # And back in winter (the change on 25 October): 01:00 UTC again.
    winter = datetime(2026, 11, 1, 1, 0, tzinfo=UTC)
    assert occurrence(w, winter) == (winter, winter + timedelta(hours=2))
    assert occurrence(w, winter - timedelta(minutes=30)) is None
    # The same window in UTC would not be open at 00:30 UTC in summer.
    in_utc = _window(repeat="weekly", starts_at=start, ends_at=start + timedelta(hours=2))
    assert occurrence(in_utc, summer + timedelta(minutes=30)) is None


@pytest.fixture
def servers(reseller):
    return [
        Server.objects.create(name=f"s{i}", address=f"10.9.0.{i}", owner=reseller, status=st)
        for i, st in enumerate(["online", "offline", "maintenance"], 1)
    ]


def test_servers_enter_and_leave_maintenance_and_a_persons_maintenance_stays(
    servers, reseller, django_capture_on_commit_callbacks
):
    now = datetime.now(UTC)
    with django_capture_on_commit_callbacks(execute=True):
        window = services.do_create_window(
            actor=reseller,
            data={
                "name": "kernel",
                "scope": "all",
                "starts_at": now - timedelta(minutes=5),
                "ends_at": now + timedelta(hours=1),
            },
        )
    statuses = dict(Server.objects.values_list("name", "status"))
    assert statuses == {"s1": "maintenance", "s2": "maintenance", "s3": "maintenance"}
    flags = dict(ServerMonitor.objects.values_list("server__name", "in_window"))
    assert flags == {"s1": True, "s2": True}  # s3 was put in maintenance by a person
    assert AuditEntry.objects.filter(action="monitoring.maintenance.start").count() == 2
    assert LiveEvent.objects.filter(topic="servers.server").count() == 2
    assert apply_windows() == {}  # idempotent
    # The window ends: the collector decides again (unknown until the next round).
    assert apply_windows(now + timedelta(hours=2)) == {
        servers[0].pk: "unknown",
        servers[1].pk: "unknown",
    }
    statuses = dict(Server.objects.values_list("name", "status"))
    assert statuses == {"s1": "unknown", "s2": "unknown", "s3": "maintenance"}
    assert not ServerMonitor.objects.filter(in_window=True).exists()
    assert AuditEntry.objects.filter(action="monitoring.maintenance.end").count() == 2
    # Deleting an open window hands its servers back at once.
    with django_capture_on_commit_callbacks(execute=True):
        services.do_delete_window(window, actor=reseller)
    assert AuditEntry.objects.filter(action="monitoring.maintenance_window.delete").exists()


def test_scopes_and_the_services_checks(servers, reseller, customer, mallory):
    Server.objects.filter(pk=servers[0].pk).update(location="fra")
    now = datetime.now(UTC)
    base = {"name": "w", "starts_at": now, "ends_at": now + timedelta(hours=1)}
    by_location = services.do_create_window(
        actor=reseller, data={**base, "scope": "location", "location": "fra"}
    )
    one = services.do_create_window(actor=reseller, data={**base, "server": servers[1]})
    assert apply_windows(now + timedelta(minutes=1)) == {
        servers[0].pk: "maintenance",
        servers[1].pk: "maintenance",
    }
    assert by_location.server is None and one.scope == "server"
    bad = [
        ({"ends_at": now}, "ends_at"),
        ({"repeat": "weekly", "ends_at": now + timedelta(days=7)}, "ends_at"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"time_zone": "../../etc/passwd"}, "time_zone"),
        ({"scope": "server", "server": None}, "server"),
        ({"scope": "location", "location": ""}, "location"),
    ]
    for change, field in bad:
        with pytest.raises(ValidationError) as err:
            services.do_create_window(actor=reseller, data={**base, "server": servers[0], **change})
        assert field in err.value.message_dict, change
    # Nobody puts a server they may not change into maintenance.
    for outsider in (customer, mallory):
        with pytest.raises(ValidationError) as err:
            services.do_create_window(actor=outsider, data={**base, "server": servers[0]})
        assert "server" in err.value.message_dict
    # An outsider's "all" window holds none of them.
    services.do_create_window(actor=mallory, data={**base, "scope": "all"})
    Server.objects.update(status="online")
    ServerMonitor.objects.update(in_window=False)
    assert set(apply_windows(now + timedelta(minutes=1))) == {servers[0].pk, servers[1].pk}


def test_api_and_portal(servers, reseller, mallory, django_capture_on_commit_callbacks):
    client = login(reseller)
    body = {
        "name": "patch night",
        "scope": "server",
        "server": str(servers[0].uuid),
        "starts_at": "2030-01-05T02:00:00+01:00",
        "ends_at": "2030-01-05T04:00:00+01:00",
        "repeat": "weekly",
        "time_zone": "Europe/Berlin",
    }
    made = client.post("/api/v1/maintenance-windows/", body, content_type="application/json")
    assert made.status_code == 201, made.content
    data = made.json()
    assert data["state"] == "scheduled" and data["next_start"].startswith("2030-01-05T01:00")
    url = f"/api/v1/maintenance-windows/{data['uuid']}/"
    patched = client.patch(url, {"name": "patch night 2"}, content_type="application/json")
    assert patched.status_code == 200 and patched.json()["name"] == "patch night 2"
    bad = client.post(
        "/api/v1/maintenance-windows/",
        {**body, "ends_at": body["starts_at"]},
        content_type="application/json",
    )
    assert bad.status_code == 400 and "ends_at" in bad.json()
    other = login(mallory)
    assert other.get(url).status_code == 404
    assert other.get("/api/v1/maintenance-windows/").json()["count"] == 0
    foreign = other.post("/api/v1/maintenance-windows/", body, content_type="application/json")
    assert foreign.status_code == 400 and "server" in foreign.json()
    assert AuditEntry.objects.filter(action="monitoring.maintenance_window.update").exists()

    # Portal: list, create (times read in the window's zone), edit, delete.
    for page in ("/monitoring/maintenance/", "/monitoring/maintenance/new/"):
        assert client.get(page).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        resp = client.post(
            "/monitoring/maintenance/new/",
            {
                "name": "db move",
                "scope": "server",
                "server": servers[1].pk,
                "starts_at": "2030-07-01T02:00",
                "ends_at": "2030-07-01T03:00",
                "repeat": "once",
                "time_zone": "Europe/Berlin",
            },
        )
    assert resp.status_code == 302, resp.content
    window = MaintenanceWindow.objects.get(name="db move")
    assert window.starts_at == datetime(2030, 7, 1, 0, 0, tzinfo=UTC)  # 02:00 CEST
    edit = client.get(window.get_absolute_url()).content.decode()
    assert 'value="2030-07-01T02:00"' in edit  # shown in its own zone again
    assert "db move" in client.get("/monitoring/maintenance/").content.decode()
    assert login(mallory).get(window.get_absolute_url()).status_code == 404
    resp = client.post(f"/monitoring/maintenance/{window.uuid}/delete/")
    assert resp.status_code == 302 and not MaintenanceWindow.objects.filter(pk=window.pk).exists()
    assert client.delete(url).status_code == 204


def test_list_query_counts_stay_flat(servers, reseller):
    client = login(reseller)
    now = datetime.now(UTC)

    def add(n):
        for i in range(n):
            services.do_create_window(
                actor=reseller,
                data={
                    "name": f"w{i}",
                    "server": servers[i % 3],
                    "starts_at": now + timedelta(days=i + 1),
                    "ends_at": now + timedelta(days=i + 1, hours=1),
                    "repeat": "weekly" if i % 2 else "once",
                },
            )

    def count(url):
        return queries_for(client, url)

    urls = ["/api/v1/maintenance-windows/", "/monitoring/maintenance/"]
    add(2)
    few = {u: count(u) for u in urls}
    add(6)
    assert {u: count(u) for u in urls} == few
