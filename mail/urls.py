"""The mail area of the portal at /mail/, and the mail clients' public autoconfig and
Autodiscover addresses at the site's root (mail/autoconfig.py)."""

from django.urls import include, path

from mail import autoconfig, views

url_prefix = ""

portal = [
    path("", views.MailDomainList.as_view(), name="mail"),
    path("new/", views.MailDomainCreate.as_view(), name="mail-domain-add"),
    path("<uuid:uuid>/", views.MailDomainDetail.as_view(), name="mail-domain"),
    path("<uuid:uuid>/delete/", views.MailDomainDelete.as_view(), name="mail-domain-delete"),
    path("<uuid:uuid>/suspend/", views.MailDomainSuspend.as_view(), name="mail-domain-suspend"),
    path(
        "<uuid:uuid>/catch-all/", views.MailDomainCatchAll.as_view(), name="mail-domain-catch-all"
    ),
    path("<uuid:uuid>/dns-check/", views.MailDomainDnsCheck.as_view(), name="mail-domain-dns"),
    path("<uuid:uuid>/spam-rules/", views.MailDomainSpamRules.as_view(), name="mail-domain-spam"),
    path("<uuid:uuid>/mailboxes/", views.MailboxAdd.as_view(), name="mailbox-add"),
    path("<uuid:uuid>/aliases/", views.MailAliasAdd.as_view(), name="mail-alias-add"),
    path("mailboxes/<uuid:uuid>/", views.MailboxEdit.as_view(), name="mailbox"),
    path("mailboxes/<uuid:uuid>/delete/", views.MailboxDelete.as_view(), name="mailbox-delete"),
    path("servers/<uuid:uuid>/queue/", views.MailQueue.as_view(), name="mail-queue"),
    path("servers/<uuid:uuid>/prepare/", views.PrepareMail.as_view(), name="mail-prepare"),
    path("aliases/<uuid:uuid>/delete/", views.MailAliasDelete.as_view(), name="mail-alias-delete"),
]

urlpatterns = [
    path("mail/config-v1.1.xml", autoconfig.thunderbird, name="mail-autoconfig"),
    path(".well-known/autoconfig/mail/config-v1.1.xml", autoconfig.thunderbird),
    path("autodiscover/autodiscover.xml", autoconfig.outlook, name="mail-autodiscover"),
    path("Autodiscover/Autodiscover.xml", autoconfig.outlook),
    path("mail/", include(portal)),
]
