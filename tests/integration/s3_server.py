"""A local S3 server for backup tests: moto's server mode on 127.0.0.1 (a free port),
speaking the S3 protocol restic uses with any provider. It checks every request's SigV4
signature against its IAM users, as a provider does: only the keys it issued are
accepted, a wrong secret key or an unknown (revoked) access key is refused with S3's
own errors. restic init makes the bucket."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

ALLOW = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*"}]}


def _policy(*actions: str) -> str:
    return json.dumps({**ALLOW, "Statement": [{**ALLOW["Statement"][0], "Action": list(actions)}]})


@dataclass
class S3:
    endpoint: str
    access_key: str  # the panel's keys: s3:* only
    secret_key: str
    admin: dict  # keys of a user who may also manage IAM (revoke the panel's keys)
    server: Any

    def client(self, service: str, **keys):
        import boto3

        keys = keys or {
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
        }
        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1", **keys)

    def issue(self, user: str) -> tuple[str, str]:
        """A new IAM user (s3:* only) and its keys: (access key, secret key)."""
        iam = self.client("iam", **self.admin)
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=_policy("s3:*"))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    def revoke(self, user: str, access_key: str) -> None:
        """The provider deletes an access key (rotated or revoked there)."""
        self.client("iam", **self.admin).delete_access_key(UserName=user, AccessKeyId=access_key)

    def bucket_exists(self, name: str) -> bool:
        s3 = self.client("s3", **self.admin)
        return name in [b["Name"] for b in s3.list_buckets()["Buckets"]]

    def stop(self) -> None:
        import requests

        # moto's switch is per process: the next server in this worker starts it again.
        requests.post(f"{self.endpoint}/moto-api/reset-auth", data=b"inf", timeout=10)
        self.server.stop()


def start_s3() -> S3:
    """Stop it with ``.stop()``."""
    moto_server = pytest.importorskip("moto.server")
    import requests

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    s3 = S3(f"http://{host}:{port}", "", "", {}, server)
    try:
        # Fresh state (moto keeps it per process, and a worker may have run another
        # server), then the users, before requests must be signed.
        requests.post(f"{s3.endpoint}/moto-api/reset", timeout=10).raise_for_status()
        iam = s3.client("iam", aws_access_key_id="setup", aws_secret_access_key="setup")
        for user, actions in (("admin", ("iam:*", "s3:*")), ("panel", ("s3:*",))):
            iam.create_user(UserName=user)
            iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=_policy(*actions))
            key = iam.create_access_key(UserName=user)["AccessKey"]
            keys = {
                "aws_access_key_id": key["AccessKeyId"],
                "aws_secret_access_key": key["SecretAccessKey"],
            }
            if user == "admin":
                s3.admin = keys
            else:
                s3.access_key, s3.secret_key = key["AccessKeyId"], key["SecretAccessKey"]
        url = f"{s3.endpoint}/moto-api/reset-auth"
        requests.post(url, data=b"0", timeout=10).raise_for_status()
    except Exception:
        server.stop()
        raise
    return s3
