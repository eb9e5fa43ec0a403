from django.urls import path

from accounts import views

url_prefix = ""  # mounted at the root: /account/... and /2fa/...

urlpatterns = [
    path("account/", views.profile, name="account"),
    path("account/security/", views.security, name="account-security"),
    path("account/tokens/", views.tokens, name="account-tokens"),
    path("account/tokens/<uuid:uuid>/revoke/", views.token_revoke, name="account-token-revoke"),
    path("account/activity/", views.ActivityList.as_view(), name="account-activity"),
    path("2fa/verify/", views.two_factor_verify, name="two_factor_verify"),
    path("2fa/setup/", views.two_factor_setup, name="two_factor_setup"),
    path("2fa/backup-codes/", views.backup_codes, name="two_factor_backup_codes"),
    path("2fa/disable/", views.disable_2fa, name="two_factor_disable"),
]
