"""nftables for the apply engine: one ruleset file, validated with ``nft -c``, loaded
commit-confirmed.

Loading arms a revert on the server first (a detached process that, unless confirmed within
``firewall_confirm_seconds``, puts the previous file back and loads it), then loads the new
rules; the panel confirms only after a *new* SSH connection gets in. So rules that cut the
panel off undo themselves even when the panel can no longer reach the server.
"""

from __future__ import annotations

import posixpath
import time
from pathlib import Path

from servers.engine import ApplyError, Job, ProfileKey, Service, ServiceRun, Step, fill
from servers.transport import TransportError

TABLE = "hosting_panel"
# Constant text; run as `sh -c SCRIPT nft MODE SCRIPT STATE RUN FILE BACKUP SECONDS`.
SCRIPT = Path(__file__).with_name("nftables.sh").read_text()


class NftService(Service):
    name = "nftables"
    reload_order = 90  # last: a firewall problem never holds back sites
    batchable = False  # confirming needs a new connection between loading and committing
    profile_keys = (
        ProfileKey("nft_file", "/etc/nftables.d/hosting-panel.nft", "path", "The ruleset."),
        ProfileKey("nft_test", ["nft", "-c", "-f", "{file}"], "command", "Validates {file}."),
        ProfileKey(
            "firewall_confirm_seconds",
            30,
            "seconds",
            "New rules are reverted on the server unless the panel reconnects within this.",
        ),
    )

    validated_by_jobs = True

    def _staged(self, run: ServiceRun, path: str) -> str:
        directory, name = posixpath.split(path)
        return f"{directory}/.panel-new-{run.run_id}/{name}"

    def validation_jobs(self, run: ServiceRun) -> list[Job]:
        return [
            Job(f"nft-{i}", fill(run.profile.nft_test, file=self._staged(run, path)))
            for i, path in enumerate(sorted(run.files))
        ]

    def validate(self, run: ServiceRun) -> dict[str, str]:
        failed = {}
        for i, (path, f) in enumerate(sorted(run.files.items())):
            if path in run.held:
                continue
            staged = self._staged(run, path)
            result = run.jobs.pop(f"nft-{i}", None) or run.step(
                Step(fill(run.profile.nft_test, file=staged), 60)
            )
            if not result.ok:
                text = result.output.strip().replace(staged, path)
                failed[f.unit] = f"nft rejected the firewall rules: {text[:4000]}"
        return failed

    def _call(self, run: ServiceRun, t, mode: str) -> str:
        path = run.profile.nft_file
        directory, name = posixpath.split(path)
        backup = f"{directory}/.panel-old-{run.run_id}/{name}"
        seconds = run.profile.firewall_confirm_seconds
        res = t.run(
            ["sh", "-c", SCRIPT, "nft", mode, SCRIPT, run.profile.state_dir, run.run_id, path]
            + [backup, str(seconds)],
            timeout=60,
        )
        if not res.ok:
            raise ApplyError(f"nftables: {(res.stdout or res.stderr).strip()}")
        return res.stdout

    def reload(self, run: ServiceRun) -> None:
        self._call(run, run.t, "start")
        seconds = run.profile.firewall_confirm_seconds
        try:
            fresh = run.fresh()
            try:
                fresh.run(["true"], timeout=15).check()
            finally:
                if fresh is not run.t:
                    fresh.close()
        except TransportError as exc:
            run.log(
                f"A new connection failed after loading the rules ({exc}); the server puts the "
                f"previous rules back within {seconds} s."
            )
            time.sleep(seconds + 2)
            raise ApplyError(
                f"the new firewall rules would cut the panel off ({exc}); the server restored "
                "the previous rules"
            ) from None
        try:
            self._call(run, run.t, "confirm")
        except ApplyError as exc:
            raise ApplyError(
                f"the new firewall rules would cut the panel off: a new connection got in only "
                f"after the server had restored the previous rules ({exc})"
            ) from None

    def verify(self, run: ServiceRun) -> dict[str, str]:
        listed = run.t.run(["nft", "list", "table", "inet", TABLE], timeout=30)
        wanted = bool(run.live_files())
        if run.live_removed() and not wanted and listed.ok:
            return {u: f"the nftables table {TABLE} is still loaded" for u in run.units()}
        if wanted and not listed.ok:
            return {u: f"the nftables table {TABLE} is not loaded" for u in run.units()}
        return {}
