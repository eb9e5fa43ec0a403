"""django-q2 brokers that claim the operations they pull (core.workers): the same Redis list
and ORM queue as django-q2's own, so tasks enqueued by either are read by both."""

from __future__ import annotations

from django_q.brokers.orm import ORM
from django_q.brokers.redis_broker import Redis

from core.workers import claim_pulled


class ClaimingRedis(Redis):
    def dequeue(self):
        tasks = super().dequeue()
        if tasks:
            claim_pulled([payload for _, payload in tasks])
        return tasks


class ClaimingORM(ORM):
    def dequeue(self):
        tasks = super().dequeue()
        if tasks:
            claim_pulled([payload for _, payload in tasks])
        return tasks
