from websites.certificates.api import views

routes = [
    ("certificates", views.CertificateViewSet, "certificate"),
]
