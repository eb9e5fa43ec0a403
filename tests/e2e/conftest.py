"""Browser tests reuse the real-program fixtures of the integration tests."""

from tests.integration.conftest import sshd  # noqa: F401 - re-exported fixture
