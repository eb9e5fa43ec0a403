import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from accounts import services
from core import audit
from core.models import AuditEntry, AuditHead
from tests.conftest import login

pytestmark = pytest.mark.django_db


@pytest.fixture
def chain(admin_user, customer):
    for i in range(5):
        services.do_update_profile(customer, actor=admin_user, data={"name": f"name {i}"})
    return list(AuditEntry.objects.order_by("id"))


def raw_sql(sql, params):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


class TestChain:
    def test_intact_chain_verifies(self, chain, capsys):
        checked, problem = audit.verify_chain()
        assert problem is None and checked == len(chain) >= 5
        call_command("verify_audit")
        assert f"{checked} entries verified" in capsys.readouterr().out

    def test_entries_link_to_previous(self, chain):
        assert chain[0].prev_hash == audit.GENESIS
        for before, after in zip(chain, chain[1:], strict=False):
            assert after.prev_hash == before.hash

    def test_model_refuses_update_and_delete(self, chain):
        entry = chain[1]
        entry.action = "x"
        with pytest.raises(ValueError, match="append-only"):
            entry.save()
        with pytest.raises(ValueError, match="append-only"):
            entry.delete()

    def test_edited_entry_is_found(self, chain):
        victim = chain[2]
        raw_sql(
            "UPDATE core_auditentry SET object_label = %s WHERE id = %s",
            ["tampered", victim.pk],
        )
        _, problem = audit.verify_chain()
        assert problem.entry_id == victim.pk and "altered" in problem.message
        with pytest.raises(CommandError, match=f"#{victim.pk} was altered"):
            call_command("verify_audit")

    def test_removed_entry_is_found(self, chain):
        victim = chain[2]
        raw_sql("DELETE FROM core_auditentry WHERE id = %s", [victim.pk])
        _, problem = audit.verify_chain()
        assert problem.entry_id == chain[3].pk and "removed or altered" in problem.message

    def test_cut_tail_is_found(self, chain):
        raw_sql("DELETE FROM core_auditentry WHERE id = %s", [chain[-1].pk])
        _, problem = audit.verify_chain()
        assert problem is not None and "removed from the end" in problem.message

    def test_rehashing_a_forged_entry_still_breaks_the_next_link(self, chain):
        victim = AuditEntry.objects.get(pk=chain[1].pk)
        victim.object_label = "forged"
        new_hash = audit.compute_hash(victim)
        raw_sql(
            "UPDATE core_auditentry SET object_label = %s, hash = %s WHERE id = %s",
            ["forged", new_hash, victim.pk],
        )
        _, problem = audit.verify_chain()
        assert problem.entry_id == chain[2].pk

    def test_head_tracks_newest(self, chain):
        head = AuditHead.objects.get(pk=1)
        assert head.last_id == chain[-1].pk and head.last_hash == chain[-1].hash

    def test_changes_carry_before_and_after_and_ip(self, chain, admin_user):
        entry = chain[-1]
        assert entry.changes == {"name": ["name 3", "name 4"]}
        assert entry.actor_id == admin_user.pk


class TestVisibility:
    def test_portal_activity_filtered(self, chain, customer, mallory, reseller):
        assert len(login(customer).get("/account/activity/").context["object_list"]) >= 5
        assert len(login(mallory).get("/account/activity/").context["object_list"]) == 0
        assert len(login(reseller).get("/account/activity/").context["object_list"]) >= 5
        assert login(mallory).get("/api/v1/audit/").json()["results"] == []

    def test_every_model_is_in_the_admin(self, admin_user):
        from django.apps import apps
        from django.contrib import admin

        ours = {"panel", "accounts", "servers", "websites", "dns", "vps", "monitoring"}
        missing = [
            m._meta.label
            for m in apps.get_models()
            if m._meta.app_label in ours
            and m not in admin.site._registry
            and not m.__module__.startswith("tests.")  # test-only models
        ]
        assert missing == []

    def test_avatar_upload(self, customer, settings, tmp_path):
        import io

        from django.core.files.uploadedfile import SimpleUploadedFile
        from PIL import Image

        settings.MEDIA_ROOT = tmp_path
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), "red").save(buf, "PNG")
        upload = SimpleUploadedFile("me.png", buf.getvalue(), content_type="image/png")
        resp = login(customer).post(
            "/account/", {"name": "N", "company": "", "timezone": "UTC", "avatar": upload}
        )
        assert resp.status_code == 302
        customer.refresh_from_db()
        assert customer.avatar.name.startswith("avatars/")
        bad = SimpleUploadedFile("x.png", b"not an image", content_type="image/png")
        resp = login(customer).post(
            "/account/", {"name": "N", "company": "", "timezone": "UTC", "avatar": bad}
        )
        assert resp.status_code == 200 and "valid image" in resp.content.decode()

    def test_request_ip_is_recorded(self, customer):
        login(customer).post(
            "/account/", {"name": "N", "company": "", "timezone": "UTC"}, REMOTE_ADDR="10.4.4.4"
        )
        assert AuditEntry.objects.get(action="user.update").ip == "10.4.4.4"

    def test_admin_is_read_only(self, chain, admin_user):
        client = login(admin_user)
        assert client.get("/admin/core/auditentry/").status_code == 200
        url = f"/admin/core/auditentry/{chain[0].pk}/delete/"
        assert client.post(url, {"post": "yes"}).status_code == 403
        assert AuditEntry.objects.filter(pk=chain[0].pk).exists()

    def test_admin_changes_are_audited(self, admin_user, customer):
        client = login(admin_user)
        from core.models import Operation

        op = Operation.objects.create(kind="k", task="tests.support.steps", owner=customer)
        resp = client.post(
            "/admin/core/operation/", {"action": "cancel", "_selected_action": [op.pk]}
        )
        assert resp.status_code == 302
        assert AuditEntry.objects.filter(action="operation.cancel", actor_id=admin_user.pk).exists()
