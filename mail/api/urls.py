"""Joined to the API router (panel/api/urls.py discovers it)."""

from mail.api import views

routes = [
    ("mail-domains", views.MailDomainViewSet, "maildomain"),
    ("mailboxes", views.MailboxViewSet, "mailbox"),
    ("mail-aliases", views.MailAliasViewSet, "mailalias"),
    ("mail-servers", views.MailServerViewSet, "mailserver"),
]
urlpatterns: list = []
