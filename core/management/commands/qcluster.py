"""django-q2's qcluster, as a panel worker (core/workers.py).

Before the cluster starts, it registers itself under a name of its own (its task processes
and pusher inherit it, and claim operations with it); its main process then stamps that row
every few seconds and requeues operations that dead workers had taken off the queue (at
start and every few beats). On SIGTERM (or SIGINT) it gives back what it took but has not
started, then lets django-q2 stop: its task processes finish what they run.

``--pidfile`` (written once the cluster runs, removed when it stops) is what
``manage.py upgrade --pid-dir`` restarts workers by.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

from django.db import connections
from django_q.cluster import Cluster
from django_q.management.commands.qcluster import Command as QCommand

from core import workers

log = logging.getLogger(__name__)


class Command(QCommand):
    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--pidfile", default="", help="write the process id here once running")

    def handle(self, *args, pidfile: str = "", **options):
        if options.get("cluster_name"):
            os.environ["Q_CLUSTER_NAME"] = options["cluster_name"]
        name = workers.new_worker_id()
        os.environ[workers.ENV] = name  # the cluster's processes are forked from this one
        liveness = workers.Liveness(name)
        liveness.register()
        # The cluster's processes must not share this process's database connection.
        connections.close_all()
        cluster = Cluster()

        def stop(signum, frame):
            try:
                released = liveness.stopping()
                if released:
                    log.warning("worker %s stopping: gave back %s operations", name, released)
            except Exception:  # noqa: BLE001 - stopping must not wait on the database
                log.warning("worker %s: could not give back its operations", name, exc_info=True)
            finally:
                connections.close_all()
            cluster.sig_handler(signum, frame)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        cluster.start()
        liveness.start()
        if pidfile:
            Path(pidfile).write_text(f"{os.getpid()}\n")
        try:
            if options.get("run_once"):
                cluster.stop()
            while cluster.sentinel.is_alive():
                cluster.sentinel.join(0.5)
        finally:
            try:
                liveness.close()
            finally:
                connections.close_all()
                if pidfile and workers_pid(pidfile) == os.getpid():
                    Path(pidfile).unlink(missing_ok=True)


def workers_pid(pidfile: str) -> int | None:
    try:
        return int(Path(pidfile).read_text().strip())
    except (OSError, ValueError):
        return None
