"""Portal pages: customers' databases and users (passwords shown once, right after they are
made), and the staff's database servers."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404
from django.shortcuts import render
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.cache import never_cache

from core.generic import (
    PortalActionView,
    PortalDeleteView,
    PortalDetailView,
    PortalEditView,
    PortalFormActionView,
    PortalListView,
    form_errors_from,
    get_for_user,
    redirect_htmx_aware,
)
from core.live import LivePageMixin
from core.models import Operation
from core.policy import ADD, CHANGE, DELETE, VIEW, may, restrict
from core.tables import Column, Table
from websites.databases import services
from websites.databases.filters import DatabaseFilter, DatabaseServerFilter, DatabaseUserFilter
from websites.databases.forms import DatabaseForm, DatabaseServerForm, GrantForm, NewUserForm
from websites.databases.models import CustomerDatabase, DatabaseGrant, DatabaseServer, DatabaseUser

DATABASE_TABLE = Table(
    columns=(
        Column("Name"),
        Column("Server", "hidden sm:table-cell"),
        Column("Status"),
        Column("Size", "hidden sm:table-cell"),
        Column("Owner", "hidden lg:table-cell"),
    ),
    row_template="databases/partials/database_row.html",
    empty_text="No databases yet.",
    testid="databases-table",
    live="/ws/live/databases/",
    rows_id="cdb-rows",
)
USER_TABLE = Table(
    columns=(
        Column("Name"),
        Column("Server", "hidden sm:table-cell"),
        Column("Status"),
        Column("Password changed", "hidden md:table-cell"),
        Column("Owner", "hidden lg:table-cell"),
    ),
    row_template="databases/partials/user_row.html",
    empty_text="No database users yet.",
    testid="database-users-table",
    live="/ws/live/database-users/",
    rows_id="cdbu-rows",
)
SERVER_TABLE = Table(
    columns=(
        Column("Name"),
        Column("Engine"),
        Column("Address", "hidden sm:table-cell"),
        Column("New databases", "hidden md:table-cell"),
    ),
    row_template="databases/partials/server_row.html",
    empty_text="No database servers yet.",
    testid="database-servers-table",
)


def _operations(user, obj):
    return (
        restrict(Operation, user)
        .filter(target_id=str(obj.uuid))
        .select_related("requested_by")
        .order_by("-created_at")[:10]
    )


def _password_page(request, *, user: DatabaseUser, password: str, op, database=None):
    """The only time a password is shown: the response to the request that made it."""
    response = render(
        request,
        "databases/password_once.html",
        {"db_user": user, "password": password, "operation": op, "database": database},
    )
    response["Cache-Control"] = "no-store"
    return response


class DatabaseList(LivePageMixin, PortalListView):
    model = CustomerDatabase
    filterset_class = DatabaseFilter
    table = DATABASE_TABLE
    template_name = "databases/database_list.html"
    partial_template_name = "components/table.html"

    def optimise(self, qs):
        return qs.select_related("db_server", "owner")


class DatabaseUserList(LivePageMixin, PortalListView):
    model = DatabaseUser
    filterset_class = DatabaseUserFilter
    table = USER_TABLE
    template_name = "databases/user_list.html"
    partial_template_name = "components/table.html"

    def optimise(self, qs):
        return qs.select_related("db_server", "owner")


@method_decorator(never_cache, name="dispatch")
class DatabaseCreate(View):
    template_name = "databases/database_form.html"

    def _check(self, request):
        if not may(request.user, ADD, CustomerDatabase):
            raise Http404

    def get(self, request):
        self._check(request)
        return render(request, self.template_name, {"form": DatabaseForm(user=request.user)})

    def post(self, request):
        self._check(request)
        form = DatabaseForm(request.POST, user=request.user)
        if form.is_valid():
            try:
                database, password = services.do_create_database(
                    actor=request.user,
                    data=form.service_data(),
                    with_user=form.cleaned_data["with_user"],
                )
            except ValidationError as exc:
                form_errors_from(form, exc)
            except PermissionDenied as exc:
                raise Http404 from exc
            else:
                if password is None:
                    messages.success(request, f"{database} is being created.")
                    return redirect_htmx_aware(request, database.get_absolute_url())
                user = database.grants.select_related("user").get().user
                op = _operations(request.user, database).first()
                return _password_page(
                    request, user=user, password=password, op=op, database=database
                )
        return render(request, self.template_name, {"form": form}, status=400)


class DatabaseDetail(PortalDetailView):
    model = CustomerDatabase
    template_name = "databases/database_detail.html"

    def optimise(self, qs):
        return qs.select_related("db_server", "owner")

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        database = self.object
        ctx.update(
            grants=database.grants.select_related("user"),
            grant_form=GrantForm(database=database),
            user_form=NewUserForm(),
            operations=_operations(self.request.user, database),
        )
        return ctx


class DatabaseDelete(PortalDeleteView):
    model = CustomerDatabase
    delete_service = services.do_delete_database
    template_name = "databases/confirm_delete.html"
    success_url = "/websites/databases/"


@method_decorator(never_cache, name="dispatch")
class DatabaseAddUser(View):
    """A new user with all privileges on this database; its password shown once."""

    http_method_names = ["post"]

    def post(self, request, uuid):
        database = get_for_user(CustomerDatabase, request.user, CHANGE, uuid=uuid)
        form = NewUserForm(request.POST)
        if form.is_valid():
            try:
                user, password, op = services.do_create_user(
                    actor=request.user,
                    data={"name": form.cleaned_data["name"], "owner": database.owner},
                    database=database,
                )
            except ValidationError as exc:
                messages.error(request, " ".join(exc.messages))
            except PermissionDenied as exc:
                raise Http404 from exc
            else:
                return _password_page(
                    request, user=user, password=password, op=op, database=database
                )
        else:
            messages.error(request, " ".join(m for ms in form.errors.values() for m in ms))
        return redirect_htmx_aware(request, database.get_absolute_url())


class DatabaseGrantAdd(PortalFormActionView):
    model = CustomerDatabase
    form_class = GrantForm
    message = "Privileges are being granted."

    def form_kwargs(self, obj) -> dict:
        return {"database": obj}

    @staticmethod
    def service(database, *, actor, data):
        return services.do_grant(actor=actor, data={"database": database, **data})


class DatabaseGrantRevoke(PortalActionView):
    model = DatabaseGrant
    action = DELETE
    service = services.do_revoke


class DatabaseUserDetail(PortalDetailView):
    model = DatabaseUser
    template_name = "databases/user_detail.html"

    def optimise(self, qs):
        return qs.select_related("db_server", "owner")

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        ctx.update(
            grants=self.object.grants.select_related("database"),
            operations=_operations(self.request.user, self.object),
        )
        return ctx


@method_decorator(never_cache, name="dispatch")
class DatabaseUserRotate(View):
    http_method_names = ["post"]

    def post(self, request, uuid):
        user = get_for_user(DatabaseUser, request.user, CHANGE, uuid=uuid)
        try:
            password, op = services.do_rotate_password(user, actor=request.user)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return redirect_htmx_aware(request, user.get_absolute_url())
        return _password_page(request, user=user, password=password, op=op)


class DatabaseUserDelete(PortalDeleteView):
    model = DatabaseUser
    delete_service = services.do_delete_user
    template_name = "databases/confirm_delete.html"
    success_url = "/websites/databases/users/"


# --------------------------------------------------------------------- staff pages


class DatabaseServerList(PortalListView):
    model = DatabaseServer
    filterset_class = DatabaseServerFilter
    table = SERVER_TABLE
    template_name = "databases/server_list.html"
    partial_template_name = "components/table.html"

    def get(self, request, *args, **kwargs):
        if not may(request.user, VIEW, DatabaseServer):
            raise Http404
        return super().get(request, *args, **kwargs)

    def optimise(self, qs):
        return qs.select_related("server")


class DatabaseServerDetail(PortalDetailView):
    model = DatabaseServer
    template_name = "databases/server_detail.html"
    actions = (CHANGE, DELETE)

    def optimise(self, qs):
        return qs.select_related("server")

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        ctx.update(
            database_count=self.object.databases.count(),
            user_count=self.object.users.count(),
            operations=_operations(self.request.user, self.object),
        )
        return ctx


class DatabaseServerEdit(PortalEditView):
    model = DatabaseServer
    form_class = DatabaseServerForm
    template_name = "databases/server_form.html"
    create_service = services.do_create_database_server
    update_service = services.do_update_database_server

    def service_data(self, form) -> dict:
        data = form.service_data()
        if not data.get("admin_password"):
            data.pop("admin_password", None)
        return data


class DatabaseServerDelete(PortalDeleteView):
    model = DatabaseServer
    delete_service = services.do_delete_database_server
    success_url = "/websites/databases/servers/"


class DatabaseServerCheck(PortalActionView):
    model = DatabaseServer
    action = CHANGE
    service = services.start_check_server
