"""A local S3 server for backup tests: moto's server mode on 127.0.0.1 (a free port),
speaking the S3 protocol restic uses with any provider. restic init makes the bucket."""

from __future__ import annotations

import pytest

ACCESS_KEY = "AKIAPANELTEST0001"
SECRET_KEY = "s3-secret-for-the-panel-tests"


def start_s3():
    """(server, endpoint); stop it with ``server.stop()``."""
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"
