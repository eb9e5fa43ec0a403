from django.urls import path

from accounts import views

urlpatterns = [
    path("verify/", views.two_factor_verify, name="two_factor_verify"),
    path("setup/", views.two_factor_setup, name="two_factor_setup"),
    path("backup-codes/", views.backup_codes, name="two_factor_backup_codes"),
    path("disable/", views.disable_2fa, name="two_factor_disable"),
]
