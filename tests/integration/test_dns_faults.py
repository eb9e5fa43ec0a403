"""A DNS publish whose worker is killed mid-way (SIGKILL between two update batches of a
600-record import): the panel never calls the zone published, the operation ends failed,
BIND serves part of it, and the next publish brings BIND to exactly the panel's zone."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from core.models import Operation
from dns import services
from dns.models import NameserverGroup, Record, Zone
from dns.zonefiles import do_import_zone_file
from tests.integration.dns_servers import axfr, start_panel_bind
from tests.integration.faults import die, run_in_doomed_worker
from tests.integration.test_dns_publish import bind_nameserver, panel_view

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def bind():
    from tests.integration.bind import remove

    daemon = start_panel_bind(Path(tempfile.mkdtemp(prefix="uhp-dnsfault-bind-")))
    yield daemon
    remove(daemon)


def _tsig(bind) -> dict:
    import dns.tsig

    return {
        "keyring": bind.keyring(),
        "keyname": bind.key_name,
        "keyalgorithm": dns.tsig.HMAC_SHA256,
    }


def _new_ops(since: int) -> list[Operation]:
    return list(Operation.objects.filter(id__gt=since).order_by("id"))


def _last_id() -> int:
    return Operation.objects.order_by("-id").values_list("id", flat=True).first() or 0


def test_publish_killed_between_batches_is_finished_by_the_next(bind, admin_user):
    """Operations are queued (no worker runs them) and run here, one in a doomed worker."""
    from core.operations import execute_operation

    group = NameserverGroup.objects.create(name="faulty", is_default=True)
    bind_nameserver(bind, group)
    mark = _last_id()
    zone = services.do_create_zone(actor=admin_user, data={"name": "killed.test"})
    for op in _new_ops(mark):
        execute_operation(op.pk)
    zone.refresh_from_db()
    assert zone.status == Zone.Status.PUBLISHED, zone.status_message

    text = "\n".join(f"h{i:04d} 300 IN A 10.1.{i // 250}.{i % 250 + 1}" for i in range(600))
    mark = _last_id()
    do_import_zone_file(zone, text, actor=admin_user)
    (op,) = _new_ops(mark)

    def arm():
        from dns import providers

        real = providers.Bind.update
        calls = []

        def update(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == 2:  # the first batch is on the server; the worker dies
                die()
            return real(self, *args, **kwargs)

        providers.Bind.update = update

    run_in_doomed_worker(op, arm)
    assert op.state == Operation.State.FAILED
    zone.refresh_from_db()
    assert zone.status != Zone.Status.PUBLISHED
    served = axfr(bind.host, bind.port, "killed.test", **_tsig(bind))
    assert 0 < sum(1 for k in served if k.endswith(" A")) < 600  # partly there: honest

    mark = _last_id()
    services.publish_zone(zone, actor=admin_user)
    for again in _new_ops(mark):
        execute_operation(again.pk)
        again.refresh_from_db()
        assert again.state == Operation.State.SUCCEEDED, again.error
    zone.refresh_from_db()
    assert zone.status == Zone.Status.PUBLISHED, zone.status_message
    assert Record.objects.filter(zone=zone).count() == 600
    assert axfr(bind.host, bind.port, "killed.test", **_tsig(bind)) == panel_view(zone)
