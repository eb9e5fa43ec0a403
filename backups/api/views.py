from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from backups import services
from backups.api.serializers import (
    BackupJobSerializer,
    BackupRunSerializer,
    BackupTargetSerializer,
    BrowseSerializer,
    RestoreSerializer,
    SnapshotListingSerializer,
    TargetPasswordSerializer,
)
from backups.filters import BackupJobFilter, BackupRunFilter, BackupTargetFilter
from backups.models import BackupJob, BackupRun, BackupTarget
from core.api.serializers import OperationSerializer
from core.api.viewsets import PolicyViewSetMixin
from core.policy import CHANGE


class BackupTargetViewSet(PolicyViewSetMixin, viewsets.ModelViewSet):
    """Backup targets (restic repositories; administrators, support reads). Create
    initialises the repository as an Operation; ``check`` opens it again and measures free
    space."""

    queryset = BackupTarget.objects.all()
    serializer_class = BackupTargetSerializer
    filterset_class = BackupTargetFilter
    search_fields = ["name", "path"]
    ordering_fields = ["name", "created_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def optimise(self, qs):
        return qs.select_related("server")

    def perform_destroy(self, target):
        services.do_delete_target(target, actor=self.request.user)

    @extend_schema(request=None, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], url_path="check", policy_action=CHANGE)
    def check(self, request, uuid=None):
        op = services.start_check_target(self.get_object(), actor=request.user)
        data = OperationSerializer(op, context=self.get_serializer_context()).data
        return Response(data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=TargetPasswordSerializer, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], url_path="password", policy_action=CHANGE)
    def password(self, request, uuid=None):
        """A new repository password (blank: generated): restic key add, then the old key
        removed; stored only once the repository opens with it."""
        target = self.get_object()
        body = TargetPasswordSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        op = services.do_change_password(
            target, actor=request.user, data={"password": body.validated_data.get("password")}
        )
        data = OperationSerializer(op, context=self.get_serializer_context()).data
        return Response(data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], url_path="verify", policy_action=CHANGE)
    def verify(self, request, uuid=None):
        """``restic check`` of the repository."""
        op = services.start_verify_target(self.get_object(), actor=request.user)
        data = OperationSerializer(op, context=self.get_serializer_context()).data
        return Response(data, status=status.HTTP_202_ACCEPTED)


class BackupJobViewSet(PolicyViewSetMixin, viewsets.ModelViewSet):
    """Backups of system accounts. Owners read theirs, back up now and restore;
    administrators set them up."""

    queryset = BackupJob.objects.all()
    serializer_class = BackupJobSerializer
    filterset_class = BackupJobFilter
    search_fields = ["account__name"]
    ordering_fields = ["last_success_at", "created_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def optimise(self, qs):
        return qs.select_related("account", "target")

    def perform_destroy(self, job):
        services.do_delete_job(job, actor=self.request.user)

    @extend_schema(request=None, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], url_path="run", policy_action=CHANGE)
    def run(self, request, uuid=None):
        op = services.start_backup(self.get_object(), actor=request.user)
        data = OperationSerializer(op, context=self.get_serializer_context()).data
        return Response(data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses={200: BackupRunSerializer(many=True)})
    @action(detail=True, methods=["get"], url_path="snapshots", pagination_class=None)
    def snapshots(self, request, uuid=None):
        """The snapshots that still exist (successful runs retention kept)."""
        job = self.get_object()
        runs = job.runs.filter(state=BackupRun.State.SUCCEEDED, forgotten=False).exclude(
            snapshot_id=""
        )
        return Response(BackupRunSerializer(runs.select_related("job"), many=True).data)

    @extend_schema(request=BrowseSerializer, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], url_path="browse", policy_action=CHANGE)
    def browse(self, request, uuid=None):
        """List one folder of a snapshot (an Operation); read it from ``listing``."""
        job = self.get_object()
        body = BrowseSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        run = job.runs.filter(uuid=body.validated_data["run"]).first()
        path = body.validated_data.get("path") or ""
        op = services.start_browse(job, actor=request.user, run=run, path=path)
        data = OperationSerializer(op, context=self.get_serializer_context()).data
        return Response(data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        parameters=[
            OpenApiParameter("run", str, required=False, description="Default: the latest."),
            OpenApiParameter("path", str, required=False, description="Default: the home."),
        ],
        responses={200: SnapshotListingSerializer},
    )
    @action(
        detail=True,
        methods=["get"],
        url_path="listing",
        pagination_class=None,
        policy_action=CHANGE,
    )
    def listing(self, request, uuid=None):
        """A folder of a snapshot as listed by ``browse``; ``listed`` is false (and
        ``entries`` empty) until it is."""
        from django.core.exceptions import ValidationError as DjangoValidationError

        from backups.models import SnapshotListing

        job = self.get_object()
        runs = job.runs.filter(state=BackupRun.State.SUCCEEDED, forgotten=False).exclude(
            snapshot_id=""
        )
        try:
            wanted = request.query_params.get("run")
            run = runs.filter(uuid=wanted).first() if wanted else runs.first()
        except DjangoValidationError:
            run = None
        home = (run.manifest or {}).get("home", "") if run else ""
        path = (request.query_params.get("path") or home).rstrip("/") or home
        found = SnapshotListing.objects.filter(run=run, path=path).first() if run else None
        data = {
            "run": run.uuid if run else None,
            "path": path,
            "listed": found is not None,
            "listed_at": found.listed_at if found else None,
            "truncated": found.truncated if found else False,
            "entries": found.entries if found else [],
        }
        return Response(SnapshotListingSerializer(data).data)

    @extend_schema(request=RestoreSerializer, responses={202: OperationSerializer})
    @action(detail=True, methods=["post"], url_path="restore", policy_action=CHANGE)
    def restore(self, request, uuid=None):
        from websites.databases.models import CustomerDatabase

        job = self.get_object()
        body = RestoreSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        values = dict(body.validated_data)
        dry_run = values.pop("dry_run")
        run = job.runs.filter(uuid=values.pop("run")).first()
        data = {**values, "run": run}
        if "database" in values:
            data["database"] = CustomerDatabase.objects.filter(
                uuid=values["database"], owner=job.account.user
            ).first()
        op = services.do_restore(job, actor=request.user, data=data, dry_run=dry_run)
        out = OperationSerializer(op, context=self.get_serializer_context()).data
        return Response(out, status=status.HTTP_202_ACCEPTED)


class BackupRunViewSet(
    PolicyViewSetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """What each backup took (read-only)."""

    queryset = BackupRun.objects.all()
    serializer_class = BackupRunSerializer
    filterset_class = BackupRunFilter
    ordering_fields = ["started_at"]

    def optimise(self, qs):
        return qs.select_related("job")
