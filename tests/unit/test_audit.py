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

    def test_changes_carry_before_and_after_and_ip(self, chain, customer):
        entry = chain[-1]
        assert entry.changes == {"name": ["name 3", "name 4"]}
        login(customer).post(
            "/account/",
            {"name": "name 5", "company": "", "timezone": "UTC"},
            REMOTE_ADDR="10.6.6.6",
        )
        entry = AuditEntry.objects.filter(action="user.update").first()
        assert entry.changes == {"name": ["name 4", "name 5"]}
        assert (entry.actor_id, entry.ip) == (customer.pk, "10.6.6.6")


class TestVisibility:
    def test_portal_activity_filtered(self, chain, customer, mallory, reseller):
        assert len(login(customer).get("/account/activity/").context["object_list"]) >= 5
        seen = login(mallory).get("/account/activity/").context["object_list"]
        assert {e.owner_id for e in seen} == {mallory.pk}  # only her own sign-ins
        assert len(login(reseller).get("/account/activity/").context["object_list"]) >= 5
        results = login(mallory).get("/api/v1/audit/").json()["results"]
        assert {r["action"] for r in results} == {"user.login"}

    def test_every_model_is_in_the_admin(self, admin_user):
        from django.apps import apps
        from django.contrib import admin

        from core.policy import VIEW, rules_of

        def someone_may_view(model) -> bool:
            rules = rules_of(model)
            admin_views = rules.admin_may is None or VIEW in rules.admin_may
            return admin_views or VIEW in rules.support_may

        from pathlib import Path

        from django.conf import settings

        root = Path(settings.BASE_DIR).resolve()
        ours = {  # every app whose code is in this repository, nested ones included
            c.label
            for c in apps.get_app_configs()
            if Path(c.path).resolve().is_relative_to(root) and ".venv" not in Path(c.path).parts
        }
        assert {"websites", "certificates", "dns", "monitoring"} <= ours
        missing = [
            m._meta.label
            for m in apps.get_models()
            if m._meta.app_label in ours
            and m not in admin.site._registry
            and someone_may_view(m)  # second-factor devices: nobody reads them
            and not m.__module__.startswith("tests.")  # test-only models
        ]
        assert missing == []

    def test_every_admin_list_renders(self, admin_user):
        """Each registered model's change list answers for an administrator (none errors)."""
        from django.contrib import admin
        from django.urls import reverse

        from core.policy import VIEW, rules_of

        client = login(admin_user)
        for model in admin.site._registry:
            url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
            admin_may = rules_of(model).admin_may
            hidden = admin_may is not None and VIEW not in admin_may  # e.g. terminal tickets
            assert client.get(url).status_code == (403 if hidden else 200), url

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
        assert resp.status_code == 400 and "valid image" in resp.content.decode()

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


def test_every_admin_writes_through_services_or_is_read_only(admin_user, rf):
    """The admin bypassed the services; now each page either names its service or refuses."""
    from django.contrib import admin

    from core.admin_base import PolicyAdmin

    request = rf.get("/admin/")
    request.user = admin_user
    for model, model_admin in admin.site._registry.items():
        assert isinstance(model_admin, PolicyAdmin), model._meta.label
        for kind, allowed in (
            ("create", model_admin.has_add_permission(request)),
            ("update", model_admin.has_change_permission(request)),
            ("delete", model_admin.has_delete_permission(request)),
        ):
            if allowed:
                assert getattr(model_admin, f"{kind}_service") is not None, (model, kind)
