from django.urls import path

from websites.certificates import views

urlpatterns = [
    path("", views.CertificateList.as_view(), name="certificates"),
    path("site/<uuid:uuid>/", views.site_tls, name="site-tls"),
    path("site/<uuid:uuid>/issue/", views.issue, name="site-tls-issue"),
    path("site/<uuid:uuid>/upload/", views.upload, name="site-tls-upload"),
]
