from django import forms

from accounts.models import User
from core.forms import secret_field
from core.policy import ADMIN, RESELLER, role_of
from websites.databases import naming, services
from websites.databases.models import DatabaseGrant, DatabaseServer, DatabaseUser

NAME_HELP = "Lower-case letters, digits and underscores; your account name and _ come first."


class DatabaseForm(forms.Form):
    db_server = forms.ModelChoiceField(
        label="Database server", queryset=DatabaseServer.objects.none(), empty_label=None
    )
    name = forms.CharField(max_length=31, validators=[naming.validate_suffix], help_text=NAME_HELP)
    owner = forms.ModelChoiceField(queryset=User.objects.none(), required=False)
    with_user = forms.BooleanField(
        label="Also create a user of the same name with all privileges on it",
        required=False,
        initial=True,
    )

    def __init__(self, *args, user, **kwargs):
        kwargs.pop("instance", None)
        super().__init__(*args, **kwargs)
        self.user = user
        self.fields["db_server"].queryset = services.servers_for(user)
        self.fields["db_server"].label_from_instance = lambda s: (
            f"{s.name} ({s.get_engine_display()})"
        )
        prefix = f"{user.account_name}_" if user.account_name else ""
        self.fields["name"].widget.attrs["placeholder"] = "shop"
        self.fields["name"].help_text = f"The name on the server is {prefix}<this>. " + NAME_HELP
        if role_of(user) in (ADMIN, RESELLER):
            self.fields["owner"].queryset = services.owners_for(user)
            self.fields["owner"].help_text = "Blank: yourself. The owner's account name is used."
        else:
            del self.fields["owner"]

    def service_data(self) -> dict:
        data = {k: self.cleaned_data[k] for k in ("db_server", "name")}
        if self.cleaned_data.get("owner"):
            data["owner"] = self.cleaned_data["owner"]
        return data


class NewUserForm(forms.Form):
    name = forms.CharField(max_length=31, validators=[naming.validate_suffix], help_text=NAME_HELP)


class GrantForm(forms.Form):
    user = forms.ModelChoiceField(queryset=DatabaseUser.objects.none(), empty_label=None)
    privileges = forms.ChoiceField(choices=DatabaseGrant.Privileges.choices)

    def __init__(self, *args, database, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["user"].queryset = DatabaseUser.objects.filter(
            owner=database.owner, db_server=database.db_server
        ).exclude(status="deleting")


class DatabaseServerForm(forms.ModelForm):
    admin_password = secret_field(help_text="Stored encrypted. Blank keeps the current one.")

    class Meta:
        model = DatabaseServer
        fields = [*services.DATABASE_SERVER_FIELDS, *services.DATABASE_SERVER_SECRETS]

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)

    def service_data(self) -> dict:
        return dict(self.cleaned_data)
