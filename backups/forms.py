from django import forms

from backups import services
from backups.models import BackupJob, BackupRun, BackupTarget
from core.forms import secret_field
from core.policy import CHANGE, restrict


class BackupTargetForm(forms.ModelForm):
    password = secret_field(help_text="Stored encrypted. Blank: generated (new), kept (edit).")
    sftp_private_key = secret_field(
        textarea=True, help_text="Stored encrypted. Blank: a new key pair (new), kept (edit)."
    )
    s3_access_key = secret_field(help_text="S3: stored encrypted. Blank keeps it (edit).")
    s3_secret_key = secret_field(help_text="S3: stored encrypted. Blank keeps it (edit).")

    class Meta:
        model = BackupTarget
        fields = [*services.TARGET_FIELDS, *services.TARGET_SECRETS]

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        if user is not None:
            from servers.models import Server

            self.fields["server"].queryset = restrict(Server, user, CHANGE)


class BackupJobForm(forms.ModelForm):
    class Meta:
        model = BackupJob
        fields = services.JOB_FIELDS

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        if user is not None:
            from websites.models import SystemAccount

            self.fields["account"].queryset = restrict(SystemAccount, user, CHANGE)
            self.fields["target"].queryset = restrict(BackupTarget, user, CHANGE)


class RestoreForm(forms.Form):
    run = forms.ModelChoiceField(
        queryset=BackupRun.objects.none(), label="Snapshot", empty_label=None
    )
    kind = forms.ChoiceField(
        choices=[
            ("account", "The whole account (sites, databases, configuration)"),
            ("files", "A site's files"),
            ("database", "A database"),
            ("path", "A file or folder (see Browse)"),
        ]
    )
    site = forms.ChoiceField(required=False, choices=[])
    database = forms.ModelChoiceField(queryset=None, required=False)
    path = forms.CharField(
        required=False, max_length=1024, help_text="A file or folder: its path in the snapshot."
    )
    destination = forms.ChoiceField(
        choices=[("original", "To the original place"), ("new", "To a new place")]
    )
    new_path = forms.CharField(
        required=False,
        max_length=300,
        help_text="Files or the whole account: a path below the account's home.",
    )
    new_database = forms.CharField(
        required=False, max_length=31, help_text="Database: the new database's name (suffix)."
    )
    confirm = forms.BooleanField(
        required=False,
        label="Restore now",
        help_text="Unticked: only a dry-run summary of what would be restored.",
    )

    def __init__(self, *args, job: BackupJob, **kwargs):
        super().__init__(*args, **kwargs)
        from websites.databases.models import CustomerDatabase
        from websites.models import Website

        runs = job.runs.filter(state=BackupRun.State.SUCCEEDED, forgotten=False).exclude(
            snapshot_id=""
        )
        self.fields["run"].queryset = runs
        self.fields["run"].label_from_instance = lambda r: (
            f"{r.started_at:%Y-%m-%d %H:%M} ({r.snapshot_id[:8]})"
        )
        sites = Website.objects.filter(server=job.account.server, owner=job.account.user)
        self.fields["site"].choices = [("", "—")] + [(s.domain, s.domain) for s in sites]
        self.fields["database"].queryset = CustomerDatabase.objects.filter(owner=job.account.user)

    def service_data(self) -> dict:
        data = {
            k: v for k, v in self.cleaned_data.items() if k != "confirm" and v not in ("", None)
        }
        return data


class TargetPasswordForm(forms.Form):
    password = secret_field(help_text="The new repository password. Blank: generated.")
