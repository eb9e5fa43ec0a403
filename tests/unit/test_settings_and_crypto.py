import os
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection, models

from core import crypto
from core.fields import EncryptedTextField
from panel.env import env_bool, env_int, env_list, env_str


class TestEnv:
    def test_bad_values_fail_loudly(self, monkeypatch):
        monkeypatch.setenv("X_BOOL", "perhaps")
        with pytest.raises(ImproperlyConfigured, match="X_BOOL must be a boolean"):
            env_bool("X_BOOL")
        monkeypatch.setenv("X_INT", "ten")
        with pytest.raises(ImproperlyConfigured, match="X_INT must be an integer"):
            env_int("X_INT", 1)

    def test_file_and_list(self, monkeypatch, tmp_path):
        secret = tmp_path / "s"
        secret.write_text("from-file\n")
        monkeypatch.setenv("X_SECRET_FILE", str(secret))
        assert env_str("X_SECRET") == "from-file"
        monkeypatch.setenv("X_LIST", "a, b,,c")
        assert env_list("X_LIST") == ["a", "b", "c"]
        monkeypatch.setenv("X_MISSING_FILE", str(tmp_path / "nope"))
        with pytest.raises(ImproperlyConfigured, match="cannot be read"):
            env_str("X_MISSING")

    def _run(self, code: str, **env):
        base = {
            k: v
            for k, v in os.environ.items()
            if k not in ("SECRET_KEY", "PANEL_ENCRYPTION_KEYS", "PANEL_AUDIT_KEYS", "PANEL_DEBUG")
        }
        return subprocess.run(
            [sys.executable, "-c", code],
            env={**base, "DJANGO_SETTINGS_MODULE": "panel.settings", **env},
            capture_output=True,
            text=True,
            check=False,
        )

    def test_production_refuses_to_serve_without_secrets(self):
        out = self._run("import panel.asgi", PANEL_DEBUG="0")
        assert out.returncode != 0
        assert "SECRET_KEY, PANEL_ENCRYPTION_KEYS, PANEL_AUDIT_KEYS must be set" in out.stderr
        out = self._run("import panel.asgi", PANEL_DEBUG="0", SECRET_KEY="x" * 60)
        assert out.returncode != 0
        assert "PANEL_ENCRYPTION_KEYS, PANEL_AUDIT_KEYS must be set" in out.stderr
        out = self._run(
            "import django; django.setup(); from django.conf import settings; settings.SECRET_KEY",
            PANEL_DEBUG="0",
        )
        assert out.returncode != 0 and "SECRET_KEY setting must not be empty" in out.stderr

    def test_deploy_check_reports_missing_secrets(self):
        code = (
            "import django; django.setup(); from django.core.management import call_command;"
            "call_command('check', deploy=True)"
        )
        out = self._run(code, PANEL_DEBUG="0", ALLOWED_HOSTS="panel.example.com")
        assert out.returncode != 0
        assert "panel.E001" in out.stderr and "SECRET_KEY is not set" in out.stderr
        assert "PANEL_ENCRYPTION_KEYS is not set" in out.stderr
        assert "PANEL_AUDIT_KEYS is not set" in out.stderr

    def test_tooling_works_without_secrets(self):
        code = (
            "import django; django.setup(); from django.core.management import call_command;"
            "call_command('makemigrations', check=True, dry_run=True)"
        )
        out = self._run(code, PANEL_DEBUG="0")
        assert out.returncode == 0, out.stderr
        assert "No changes detected" in out.stdout

    def test_malformed_key_fails_at_import(self):
        out = self._run(
            "import panel.settings",
            PANEL_DEBUG="0",
            SECRET_KEY="x" * 60,
            PANEL_ENCRYPTION_KEYS="not-a-key",
        )
        assert out.returncode != 0 and "not a Fernet key" in out.stderr

    def test_database_and_redis_urls_switch_backends(self):
        code = (
            "import panel.settings as s;"
            "print(s.DATABASES['default']['ENGINE']);"
            "print(s.CHANNEL_LAYERS['default']['BACKEND']); print('redis' in s.Q_CLUSTER)"
        )
        env = {
            **os.environ,
            "DATABASE_URL": "postgres://u@127.0.0.1:5432/x",
            "REDIS_URL": "redis://127.0.0.1:6379/0",
        }
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout.split()
        assert out == [
            "django.db.backends.postgresql",
            "channels_redis.core.RedisChannelLayer",
            "True",
        ]


class Secret(models.Model):
    value = EncryptedTextField(blank=True)

    class Meta:
        app_label = "core"
        managed = False
        db_table = "test_secret"


@pytest.fixture
def secret_table(transactional_db):
    with connection.schema_editor() as editor:
        editor.create_model(Secret)
    yield
    with connection.schema_editor() as editor:
        editor.delete_model(Secret)


def raw_value(pk):
    with connection.cursor() as cursor:
        cursor.execute("SELECT value FROM test_secret WHERE id = %s", [pk])
        return cursor.fetchone()[0]


class TestEncryption:
    def test_stored_encrypted_read_plain(self, secret_table):
        s = Secret.objects.create(value="ssh-private-key-material")
        assert "ssh-private" not in raw_value(s.pk)
        assert Secret.objects.get(pk=s.pk).value == "ssh-private-key-material"

    def test_rotation(self, secret_table, settings):
        old = settings.ENCRYPTION_KEYS[0]
        s = Secret.objects.create(value="hunter2")
        new = Fernet.generate_key().decode()
        settings.ENCRYPTION_KEYS = [new, old]
        assert Secret.objects.get(pk=s.pk).value == "hunter2"  # old key still decrypts
        call_command("rotate_encryption_keys")
        settings.ENCRYPTION_KEYS = [new]
        assert Secret.objects.get(pk=s.pk).value == "hunter2"
        settings.ENCRYPTION_KEYS = [old]
        with pytest.raises(crypto.DecryptionError):
            crypto.decrypt(raw_value(s.pk))
        settings.ENCRYPTION_KEYS = []
        with pytest.raises(ImproperlyConfigured, match="PANEL_ENCRYPTION_KEYS must be set"):
            crypto.encrypt("anything")
