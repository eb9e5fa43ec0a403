from django.urls import path

from accounts import views

urlpatterns = [
    path("", views.profile, name="account"),
    path("security/", views.security, name="account-security"),
    path("tokens/", views.tokens, name="account-tokens"),
    path("tokens/<uuid:uuid>/revoke/", views.token_revoke, name="account-token-revoke"),
    path("activity/", views.ActivityList.as_view(), name="account-activity"),
]
