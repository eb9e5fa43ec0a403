from vps.api import views

routes = [
    ("vps", views.VpsViewSet, "vps"),
    ("vps-snapshots", views.SnapshotViewSet, "vpssnapshot"),
    ("hypervisors", views.HypervisorViewSet, "hypervisor"),
    ("images", views.ImageViewSet, "image"),
    ("vps-plans", views.VpsPlanViewSet, "vpsplan"),
    ("ssh-keys", views.SshKeyViewSet, "sshkey"),
    ("ip-pools", views.IpPoolViewSet, "ippool"),
]
urlpatterns: list = []
