"""The apply engine: desired state in the database -> files on a server, validated, swapped in
atomically, reloaded and verified live. See docs/apply-engine.md for how an app plugs in.

Public surface (apps import only these): the contracts (``ManagedFile``, ``Probe``,
``ProfileKey``, ``Service``, ``IncludeDirService``, ``ServiceRun``, ``UnitFailed``), the
registry (``registry.register_provider/register_service/register_service_family``),
``Engine``, ``ApplyError``, ``ApplyResult``, ``profile_for``, ``fill`` and the dirty-unit
bookkeeping in ``servers.engine.state``. Targets that are not files (a nameserver, an API)
get a publisher: ``servers.engine.publisher`` (``Publisher``, ``publish``, ``bisect``) and
``registry.register_publisher``.
"""

from servers.engine.contracts import (
    ApplyError,
    Job,
    ManagedFile,
    Probe,
    ProfileKey,
    Provider,
    Service,
    Step,
    StepResult,
    UnitFailed,
)
from servers.engine.includedir import IncludeDirService
from servers.engine.profile import Profile, fill, profile_for, validate_overrides
from servers.engine.run import ServiceRun

__all__ = [
    "ApplyError",
    "IncludeDirService",
    "Job",
    "ManagedFile",
    "Probe",
    "Profile",
    "ProfileKey",
    "Provider",
    "Service",
    "ServiceRun",
    "Step",
    "StepResult",
    "UnitFailed",
    "fill",
    "profile_for",
    "validate_overrides",
]
