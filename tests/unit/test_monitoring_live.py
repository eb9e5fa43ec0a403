"""Live samples reach websocket clients (embedded in-memory layer, and Redis when REDIS_URL
is set): the dashboard's cards re-render, API clients get the values, outsiders get 404.
The server is the panel's own host (local transport), so the round reads the real /proc."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from monitoring.collector import SAMPLE_TOPIC, collect_round
from servers.models import Server
from tests.conftest import in_thread, login
from tests.unit.test_live import connect, open_ready, receive_until, rows

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def local_server(reseller):
    return Server.objects.create(
        name="here", address="127.0.0.1", transport=Server.Transport.LOCAL, owner=reseller
    )


async def test_a_round_reaches_cards_and_json_clients(local_server, reseller, mallory):
    client = await sync_to_async(login)(reseller)
    hex_ = local_server.uuid.hex
    cards, _ = await open_ready("/ws/live/monitoring/?since=0", client)
    stream, _ = await open_ready(f"/ws/live/monitoring/{local_server.uuid}/?format=json", client)
    in_thread(collect_round).join(30)
    events = await receive_until(
        stream, lambda got: any(m.get("model") == SAMPLE_TOPIC for m in got)
    )
    sample = next(m for m in events if m.get("model") == SAMPLE_TOPIC)
    assert sample["key"] == hex_ and sample["type"] == "changed"
    assert 0 < sample["data"]["values"]["mem_pct"] < 100 and sample["data"]["status"] == "online"
    got = await receive_until(cards, lambda msgs: f"mon-{hex_}-card" in rows(msgs))
    html = rows(got)[f"mon-{hex_}-card"]["html"]
    assert "here" in html and "Online" in html and "%" in html
    await cards.disconnect()
    await stream.disconnect()

    # Someone who may not see the server is refused, and hears nothing on the list socket.
    outsider = await sync_to_async(login)(mallory)
    comm, ok, code = await connect(f"/ws/live/monitoring/{local_server.uuid}/", outsider)
    assert not ok and code == 4404
    theirs, _ = await open_ready("/ws/live/monitoring/?since=0", outsider)
    in_thread(collect_round).join(30)
    assert await theirs.receive_nothing(timeout=0.5)
    await theirs.disconnect()


def test_pages_show_cards_and_charts(local_server, reseller, mallory):
    in_thread(collect_round).join(30)
    client = login(reseller)
    page = client.get("/").content.decode()
    assert f'id="mon-{local_server.uuid.hex}-card"' in page
    assert 'data-live="/ws/live/monitoring/"' in page
    detail = client.get(local_server.get_absolute_url()).content.decode()
    assert "data-metrics-chart" in detail and "vendor/uplot/uPlot.iife.min.js" in detail
    assert f"/api/v1/metrics/{local_server.uuid}/" in detail
    assert "server-cards" not in login(mallory).get("/").content.decode()


async def test_alert_and_check_lists_follow_their_rows(reseller, admin_user, mallory):
    """A firing alert makes its owner's open alert list re-fetch, an acknowledgement re-renders
    the row; a check's run re-renders its row; nobody else hears of either."""
    from datetime import timedelta

    from django.utils import timezone

    from monitoring import checks, services
    from monitoring.alerts import evaluate_alerts
    from monitoring.models import Sample

    db = sync_to_async
    server = await db(Server.objects.create)(
        name="web9", address="10.9.0.9", owner=reseller, status="online"
    )
    client, outsider = await db(login)(reseller), await db(login)(mallory)
    alerts, _ = await open_ready("/ws/live/alerts/?since=0", client)
    theirs, _ = await open_ready("/ws/live/alerts/?since=0", outsider)
    await db(services.do_create_rule)(
        actor=reseller,
        data={"name": "CPU", "kind": "metric", "metric": "cpu", "comparison": ">", "threshold": 50},
    )
    now = timezone.now()
    await db(Sample.objects.create)(
        server=server, at=now - timedelta(seconds=1), values={"cpu": 90}
    )
    alert = (await db(evaluate_alerts)(now)).fired[0]
    row_id = f"alert-{alert.uuid.hex}-row"
    got = await receive_until(alerts, lambda m: row_id in rows(m))
    assert rows(got)[row_id]["refetch"] is True and "web9" in rows(got)[row_id]["html"]
    await db(services.do_acknowledge_alert)(alert, actor=reseller)
    got = await receive_until(alerts, lambda m: "acknowledged" in rows(m)[row_id]["html"])
    assert await theirs.receive_nothing(timeout=0.5)

    staff = await db(login)(admin_user)
    check_list, _ = await open_ready("/ws/live/checks/?since=0", staff)
    check = await db(services.do_create_check)(
        actor=admin_user,
        data={"name": "closed", "kind": "tcp", "target": "127.0.0.1:9", "retries": 1},
    )
    await db(checks.run_checks)([check])
    check_id = f"check-{check.uuid.hex}-row"
    got = await receive_until(
        check_list, lambda m: "Down" in rows(m).get(check_id, {}).get("html", "")
    )
    assert "0.0 %" in rows(got)[check_id]["html"]  # its uptime share, recomputed
    assert await theirs.receive_nothing(timeout=0.5)
    for comm in (alerts, theirs, check_list):
        await comm.disconnect()


def test_alert_and_check_pages_open_their_sockets(reseller):
    client = login(reseller)
    assert 'data-live="/ws/live/alerts/"' in client.get("/monitoring/").content.decode()
    assert 'data-live="/ws/live/checks/"' in client.get("/monitoring/checks/").content.decode()
