from rest_framework import serializers

from backups import services
from backups.models import BackupJob, BackupRun, BackupTarget
from core.api.serializers import ServiceSerializer
from core.policy import CHANGE, restrict
from servers.models import Server


class BackupTargetSerializer(ServiceSerializer):
    server = serializers.SlugRelatedField(slug_field="uuid", queryset=Server.objects.none())
    password = serializers.CharField(write_only=True, required=False, allow_blank=True)
    sftp_private_key = serializers.CharField(write_only=True, required=False, allow_blank=True)
    s3_access_key = serializers.CharField(write_only=True, required=False, allow_blank=True)
    s3_secret_key = serializers.CharField(write_only=True, required=False, allow_blank=True)
    measures_free_space = serializers.BooleanField(
        read_only=True, help_text="False for S3, which has no free-space figure."
    )
    sftp_public_key = serializers.CharField(read_only=True)
    repository = serializers.CharField(read_only=True)
    create_service = staticmethod(services.do_create_target)
    update_service = staticmethod(services.do_update_target)

    class Meta:
        model = BackupTarget
        fields = [
            "uuid",
            *services.TARGET_FIELDS,
            *services.TARGET_SECRETS,
            "repository",
            "sftp_public_key",
            "measures_free_space",
            "status",
            "status_message",
            "free_bytes",
            "checked_at",
            "created_at",
        ]
        read_only_fields = [
            "uuid",
            "status",
            "status_message",
            "free_bytes",
            "checked_at",
            "created_at",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        if request is not None:
            self.fields["server"].queryset = restrict(Server, request.user, CHANGE)

    def update(self, instance, validated_data):
        for name in services.TARGET_SECRETS:
            if not validated_data.get(name):
                validated_data.pop(name, None)
        return super().update(instance, validated_data)


class BackupJobSerializer(ServiceSerializer):
    account = serializers.SlugRelatedField(slug_field="uuid", queryset=BackupJob.objects.none())
    target = serializers.SlugRelatedField(slug_field="uuid", queryset=BackupTarget.objects.none())
    account_name = serializers.CharField(source="account.name", read_only=True)
    create_service = staticmethod(services.do_create_job)
    update_service = staticmethod(services.do_update_job)

    class Meta:
        model = BackupJob
        fields = [
            "uuid",
            *services.JOB_FIELDS,
            "account_name",
            "last_status",
            "last_error",
            "last_run_at",
            "last_success_at",
            "last_size_bytes",
            "last_test_status",
            "last_test_at",
            "created_at",
        ]
        read_only_fields = [
            "uuid",
            "last_status",
            "last_error",
            "last_run_at",
            "last_success_at",
            "last_size_bytes",
            "last_test_status",
            "last_test_at",
            "created_at",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from websites.models import SystemAccount

        request = self.context.get("request")
        self.fields["account"].queryset = (
            restrict(SystemAccount, request.user, CHANGE)
            if request
            else SystemAccount.objects.none()
        )
        if request is not None:
            self.fields["target"].queryset = restrict(BackupTarget, request.user, CHANGE)


class BackupRunSerializer(serializers.ModelSerializer):
    job = serializers.SlugRelatedField(slug_field="uuid", read_only=True)
    restorable = serializers.BooleanField(read_only=True)

    class Meta:
        model = BackupRun
        fields = [
            "uuid",
            "job",
            "state",
            "error",
            "started_at",
            "finished_at",
            "snapshot_id",
            "files",
            "size_bytes",
            "bytes_added",
            "duration_s",
            "forgotten",
            "restorable",
            "manifest",
        ]
        read_only_fields = fields


class RestoreSerializer(serializers.Serializer):
    run = serializers.UUIDField(help_text="The run whose snapshot to restore from.")
    kind = serializers.ChoiceField(choices=["account", "files", "database", "path"])
    site = serializers.CharField(required=False, help_text="files: the site's domain.")
    database = serializers.UUIDField(required=False, help_text="database: the database.")
    path = serializers.CharField(
        required=False, max_length=1024, help_text="path: a file or folder of the home."
    )
    destination = serializers.ChoiceField(choices=["original", "new"], default="original")
    new_path = serializers.CharField(
        required=False, help_text="files or account to a new place: a path below the home."
    )
    new_database = serializers.CharField(required=False, help_text="The new database's suffix.")
    dry_run = serializers.BooleanField(default=True, help_text="Only say what would be restored.")


class TargetPasswordSerializer(serializers.Serializer):
    password = serializers.CharField(
        required=False, allow_blank=True, write_only=True, help_text="Blank: generated."
    )


class BrowseSerializer(serializers.Serializer):
    run = serializers.UUIDField(help_text="The run whose snapshot to list.")
    path = serializers.CharField(
        required=False, allow_blank=True, max_length=1024, help_text="Blank: the home."
    )


class SnapshotEntrySerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.CharField(help_text="file, dir, symlink, ...")
    size = serializers.IntegerField(required=False)
    permissions = serializers.CharField(required=False)
    uid = serializers.IntegerField(required=False)
    gid = serializers.IntegerField(required=False)
    mtime = serializers.CharField(required=False)


class SnapshotListingSerializer(serializers.Serializer):
    run = serializers.UUIDField(allow_null=True, help_text="null: no snapshot to browse.")
    path = serializers.CharField(allow_blank=True)
    listed = serializers.BooleanField(help_text="False until browse has listed the folder.")
    listed_at = serializers.DateTimeField(allow_null=True)
    truncated = serializers.BooleanField()
    entries = SnapshotEntrySerializer(many=True)
