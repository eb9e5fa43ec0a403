"""The DNS area of the portal: zone list, zone editor (records paged by cursor, searched
and filtered server-side, added, edited and deleted inline with htmx), import and export.

A zone's page costs the same few queries at 10 records as at 50,000: the records come a page
at a time through the (zone, name, type, id) index, never counted."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views import View

from core import events, sharing
from core.generic import (
    PortalActionView,
    PortalDeleteView,
    PortalEditView,
    PortalListView,
    form_errors_from,
    get_for_user,
    redirect_htmx_aware,
)
from core.pagination import keyset_page
from core.policy import (
    APPLY,
    CHANGE,
    DELETE,
    VIEW,
    annotate_permissions,
    collect_permissions,
    restrict,
)
from core.tables import Column, Table
from dns import services
from dns.filters import RecordFilter, ZoneFilter
from dns.forms import AxfrForm, ImportForm, RecordForm, ZoneForm
from dns.models import Record, Zone
from dns.zonefiles import do_import_axfr, do_import_zone_file, export_zone_file, tsig_of

PAGE_SIZE = 50
ZONE_TABLE = Table(
    columns=(
        Column("Zone"),
        Column("Status"),
        Column("Serial", "hidden sm:table-cell"),
        Column("Owner", "hidden lg:table-cell"),
    ),
    row_template="dns/partials/zone_row.html",
    empty_icon="network",
    empty_text="No zones yet.",
    testid="zones-table",
)


class ZoneList(PortalListView):
    model = Zone
    filterset_class = ZoneFilter
    table = ZONE_TABLE
    template_name = "dns/zone_list.html"
    partial_template_name = "components/table.html"

    def optimise(self, qs):
        qs = qs.select_related("owner")
        q = self.request.GET.get("q", "").strip().lower()[:253]
        return qs.filter(name__contains=q) if q else qs


class ZoneCreate(PortalEditView):
    model = Zone
    form_class = ZoneForm
    template_name = "dns/zone_form.html"
    create_service = staticmethod(services.do_create_zone)
    created_message = "Zone {object} added."

    def service_data(self, form) -> dict:
        data = dict(form.cleaned_data)
        variables = {k: data.pop(k) for k in ("server_ip", "server_ipv6") if k in data}
        data["variables"] = {k: v for k, v in variables.items() if v}
        for name in ("network", "template"):
            if not data.get(name):
                data.pop(name, None)
        return data


class ZoneDelete(PortalDeleteView):
    model = Zone
    delete_service = staticmethod(services.do_delete_zone)
    success_url = "/dns/"


class ZoneCheckNs(PortalActionView):
    model = Zone
    action = APPLY
    service = staticmethod(services.do_check_ns)


class ZonePublish(PortalActionView):
    model = Zone
    action = APPLY
    message = "Publishing the zone."

    @staticmethod
    def service(zone, *, actor):
        ops = services.publish_zone(zone, actor=actor)
        return ops[0] if len(ops) == 1 else None


def _zone(request, uuid, action=VIEW) -> Zone:
    qs = restrict(Zone, request.user, action).select_related("owner", "group")
    qs = annotate_permissions(qs, request.user, (CHANGE, DELETE, APPLY))
    zone = get_object_or_404(qs, uuid=uuid)
    collect_permissions(zone, (CHANGE, DELETE, APPLY))
    return zone


class ZoneDetail(View):
    """The zone editor. htmx asks for the records table alone (search, filter, pages)."""

    def get(self, request, uuid):
        live_since = events.current_seq()  # before the data, as every live page does
        zone = _zone(request, uuid)
        records = RecordFilter(request.GET, queryset=Record.objects.filter(zone=zone))
        qs = (
            records.qs.order_by("name", "type", "id")
            if records.is_valid()
            else Record.objects.none()
        )
        page = keyset_page(qs, request.GET.get("cursor"), PAGE_SIZE)
        query = request.GET.copy()
        query.pop("cursor", None)
        ctx = {
            "zone": zone,
            "object": zone,
            "page_obj": page,
            "records": page.object_list,
            "query": query,
            "form": RecordForm(),
            "filter_types": [t for t, _l in RecordForm.base_fields["type"].choices],
            "sharing": sharing.section(zone, request.user),
            "live_since": live_since,
        }
        if getattr(request, "htmx", None) and request.htmx.target == "records":
            return render(request, "dns/partials/records.html", ctx)
        return render(request, "dns/zone_detail.html", ctx)


class ZoneDnssec(View):
    """Sign or unsign the zone (the DNSSEC card of its page)."""

    http_method_names = ["post"]

    def post(self, request, uuid):
        zone = _zone(request, uuid, CHANGE)
        try:
            ops = services.do_set_dnssec(
                zone, actor=request.user, data={"sign": request.POST.get("sign") == "1"}
            )
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return redirect_htmx_aware(request, zone.get_absolute_url())
        if len(ops) == 1:
            return redirect_htmx_aware(request, ops[0].get_absolute_url())
        messages.success(request, f"Working on {len(ops)} nameservers; the DS records follow.")
        return redirect_htmx_aware(request, zone.get_absolute_url())


def _record_data(form) -> dict:
    return {k: form.cleaned_data[k] for k in ("name", "type", "ttl", "content")}


class RecordAdd(View):
    """POST a new record: the new row (htmx), or the form again with errors per field."""

    http_method_names = ["post"]

    def post(self, request, uuid):
        zone = get_for_user(Zone, request.user, CHANGE, uuid=uuid)
        form = RecordForm(request.POST)
        if form.is_valid():
            try:
                record = services.do_create_record(
                    zone, actor=request.user, data=_record_data(form)
                )
            except ValidationError as exc:
                form_errors_from(form, exc)
            else:
                response = render(
                    request,
                    "dns/partials/record_add.html",
                    {"zone": zone, "form": RecordForm(), "added": record},
                )
                return response
        return render(request, "dns/partials/record_add.html", {"zone": zone, "form": form})


def _record(request, uuid, record, action=CHANGE) -> tuple[Zone, Record]:
    zone = get_for_user(Zone, request.user, action, uuid=uuid)
    found = Record.objects.filter(zone=zone, uuid=record).first()
    if found is None:
        raise Http404
    return zone, found


class RecordEdit(View):
    """GET: the row as a form; POST: save, and the row again (or the form with errors)."""

    def get(self, request, uuid, record):
        zone, rec = _record(request, uuid, record)
        if request.GET.get("cancel"):
            return render(request, "dns/partials/record_row.html", {"zone": zone, "row": rec})
        form = RecordForm(initial={f: getattr(rec, f) for f in ("name", "type", "ttl", "content")})
        return render(
            request, "dns/partials/record_edit.html", {"zone": zone, "row": rec, "form": form}
        )

    def post(self, request, uuid, record):
        zone, rec = _record(request, uuid, record)
        form = RecordForm(request.POST)
        if form.is_valid():
            try:
                rec = services.do_update_record(rec, actor=request.user, data=_record_data(form))
            except ValidationError as exc:
                form_errors_from(form, exc)
            else:
                return render(request, "dns/partials/record_row.html", {"zone": zone, "row": rec})
        return render(
            request,
            "dns/partials/record_edit.html",
            {"zone": zone, "row": rec, "form": form},
            status=422,
        )


class RecordDelete(View):
    http_method_names = ["post"]

    def post(self, request, uuid, record):
        zone, rec = _record(request, uuid, record)
        services.do_delete_record(rec, actor=request.user)
        if getattr(request, "htmx", None):
            return HttpResponse("")
        messages.success(request, "Record deleted.")
        return redirect_htmx_aware(request, zone.get_absolute_url())


MAX_BULK = 500  # records deleted in one request (a page of the editor is 50)


class RecordBulkDelete(View):
    """POST ``records`` (uuids of this zone's records): delete them in one change (one new
    serial, one publish), then the records table again (htmx) or the zone page."""

    http_method_names = ["post"]

    def post(self, request, uuid):
        zone = get_for_user(Zone, request.user, CHANGE, uuid=uuid)
        wanted = request.POST.getlist("records")
        if not wanted or len(wanted) > MAX_BULK:
            messages.error(request, f"Choose between 1 and {MAX_BULK} records to delete.")
            return redirect_htmx_aware(request, zone.get_absolute_url())
        try:
            found = list(Record.objects.filter(zone=zone, uuid__in=wanted))
        except ValidationError:  # not uuids
            found = []
        count = services.do_delete_records(zone, found, actor=request.user)
        messages.success(request, f"{count} record{'s' if count != 1 else ''} deleted.")
        return redirect_htmx_aware(request, zone.get_absolute_url())


class ZoneImport(View):
    """A zone file (pasted or uploaded), or a transfer from another server (AXFR, started
    as an Operation whose page shows its progress)."""

    def get(self, request, uuid):
        zone = get_for_user(Zone, request.user, CHANGE, uuid=uuid)
        return self._page(request, zone, ImportForm(), AxfrForm())

    def _page(self, request, zone, form, axfr, status=200):
        ctx = {"zone": zone, "form": form, "axfr": axfr}
        return render(request, "dns/zone_import.html", ctx, status=status)

    def post(self, request, uuid):
        zone = get_for_user(Zone, request.user, CHANGE, uuid=uuid)
        if request.POST.get("source") == "axfr":
            return self._axfr(request, zone)
        form = ImportForm(request.POST, request.FILES or None)
        if form.is_valid():
            text = form.cleaned_data["text"] or ""
            upload = form.cleaned_data.get("file")
            if upload is not None:
                text = upload.read(20 * 1024 * 1024 + 1).decode("utf-8", errors="replace")
            try:
                result = do_import_zone_file(
                    zone, text, actor=request.user, replace=form.cleaned_data["replace"]
                )
            except ValidationError as exc:
                form.add_error(None, exc.messages)
            else:
                messages.success(request, f"{result.added} records imported.")
                return redirect_htmx_aware(request, zone.get_absolute_url())
        return self._page(request, zone, form, AxfrForm(), status=400)

    def _axfr(self, request, zone):
        axfr = AxfrForm(request.POST)
        if axfr.is_valid():
            data = axfr.cleaned_data
            try:
                op = do_import_axfr(
                    zone,
                    data["host"],
                    data["port"],
                    actor=request.user,
                    replace=data["replace"],
                    tsig=tsig_of(data),
                )
            except ValidationError as exc:
                form_errors_from(axfr, exc)
            else:
                messages.success(request, "Transfer started.")
                return redirect_htmx_aware(request, op.get_absolute_url())
        return self._page(request, zone, ImportForm(), axfr, status=400)


class ZoneExport(View):
    def get(self, request, uuid):
        zone = get_for_user(Zone, request.user, VIEW, uuid=uuid)
        response = HttpResponse(export_zone_file(zone), content_type="text/plain; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{zone.name}.zone"'
        return response
