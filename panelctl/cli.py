"""panelctl: list, show, create and delete the panel's objects, start operations and follow
them live, through the REST API with an API token.

    panelctl login --url https://panel.example.com      # asks for the token, checks it
    panelctl servers list
    panelctl zones create --set name=example.com
    panelctl records create --set zone=<zone uuid> --set name=www --set type=A \
        --set content=192.0.2.1
    panelctl servers action <uuid> apply                # follows the operation to its end
    panelctl vps action <uuid> power --set action=start
    panelctl --json websites show <uuid>

Exit codes: 0 done, 1 an operation failed or was cancelled, 2 the API refused the request,
3 the panel could not be reached or no profile is configured.
"""

from __future__ import annotations

import json
import re
import sys
import time
import unicodedata
from dataclasses import dataclass
from uuid import UUID

import click
from click.core import ParameterSource

from panelctl import config
from panelctl.client import ApiError, Client

FINISHED = ("succeeded", "failed", "cancelled")
ACTION_NAME = re.compile(r"[a-z0-9-]+")  # a path segment of the API, nothing more


def _action_name(ctx, param, value: str) -> str:
    if not ACTION_NAME.fullmatch(value):
        raise click.BadParameter("lower-case letters, digits and '-' only")
    return value


# Bidirectional overrides and isolates: they reorder what the terminal shows (Trojan Source).
_BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def printable(text) -> str:
    """Server text made safe for a terminal: control characters (ESC sequences that move
    the cursor, retitle the window or rewrite earlier lines; CR; newlines that would fake a
    line of panelctl's own) and bidi overrides become visible escapes (``\\x1b``)."""
    return "".join(
        ch.encode("unicode_escape").decode("ascii")
        if ch in _BIDI or unicodedata.category(ch) == "Cc"
        else ch
        for ch in str(text)
    )


@dataclass(frozen=True)
class Resource:
    command: str  # panelctl <command> ...
    path: str  # its API collection
    columns: tuple[str, ...]  # what ``list`` shows (``--json`` shows everything)
    help: str


RESOURCES = [
    Resource("servers", "servers", ("uuid", "name", "address", "status"), "Servers."),
    Resource("websites", "websites", ("uuid", "domain", "kind", "status"), "Websites."),
    Resource("zones", "zones", ("uuid", "name", "status"), "DNS zones."),
    Resource(
        "records",
        "records",
        ("uuid", "zone", "name", "type", "content", "ttl"),
        "DNS records (list them with --filter zone=<zone uuid>).",
    ),
    Resource("vps", "vps", ("uuid", "hostname", "state", "vcpus", "memory_mib"), "VPSes."),
    Resource("mailboxes", "mailboxes", ("uuid", "address", "quota_mb", "status"), "Mailboxes."),
    Resource(
        "operations",
        "operations",
        ("uuid", "kind", "state", "progress", "target_label"),
        "Operations (long work: apply, provisioning ...).",
    ),
]


class State:
    def __init__(self, profile: str, as_json: bool) -> None:
        self.profile_name = profile
        self.as_json = as_json
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            try:
                self._client = Client(config.load(self.profile_name))
            except config.ConfigError as exc:
                fail(str(exc), 3)
        return self._client


def fail(message: str, code: int) -> None:
    click.echo(f"panelctl: {printable(message)}", err=True)
    sys.exit(code)


def api_call(func, *args, **kwargs):
    try:
        return func(*args, **kwargs)
    except ApiError as exc:
        fail(str(exc), 2 if exc.status else 3)


def output(state: State, data, columns: tuple[str, ...] | None = None) -> None:
    if state.as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    if isinstance(data, list):
        cols = columns or (tuple(data[0]) if data else ())
        rows = [[_cell(row.get(c)) for c in cols] for row in data]
        widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(cols)]
        click.echo("  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)))
        for row in rows:
            click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        return
    if isinstance(data, dict):
        width = max((len(k) for k in data), default=0)
        for key, value in data.items():
            click.echo(f"{printable(key).ljust(width)}  {_cell(value)}")
        return
    if data is not None:
        click.echo(printable(data))


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)  # escapes control characters itself
    return printable(value)


def parse_pairs(pairs: tuple[str, ...], raw: str | None) -> dict:
    """``--set key=value`` (values that parse as JSON are taken as JSON: numbers, true,
    lists) over ``--data '{...}'``."""
    data: dict = {}
    if raw:
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--data") from None
        if not isinstance(data, dict):
            raise click.BadParameter("give a JSON object", param_hint="--data")
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not key=value", param_hint="--set")
        try:
            data[key] = json.loads(value)
        except ValueError:
            data[key] = value
    return data


def is_operation(body) -> bool:
    return isinstance(body, dict) and {"uuid", "kind", "state", "progress"} <= set(body)


def follow(state: State, op: dict, *, interval: float) -> None:
    """Poll the operation until it ends, with a progress bar and its log lines; exit 1 when
    it failed or was cancelled."""
    client = state.client
    path = f"operations/{op['uuid']}/"
    last_line = 0
    shown = 0
    quiet = state.as_json
    label = printable(f"{op.get('kind', 'operation')} {op.get('target_label', '')}".strip())
    with click.progressbar(
        length=100, label=label, file=sys.stderr, show_percent=True, show_eta=False
    ) as bar:
        while True:
            op = api_call(client.get, path)
            lines = api_call(client.get, path + "log/", after=last_line) or []
            for line in lines:
                last_line = max(last_line, line["id"])
                if not quiet:
                    text = f"  {line['level']}: {line['message']}"
                    click.echo(printable(text), err=True)
            if op["progress"] > shown:
                bar.update(op["progress"] - shown)
                shown = op["progress"]
            if op["state"] in FINISHED:
                if op["state"] == "succeeded" and shown < 100:
                    bar.update(100 - shown)
                break
            time.sleep(interval)
    click.echo("", err=True)
    if state.as_json:
        output(state, op)
    else:
        text = f"{op['state']}: {op.get('error') or op.get('message') or ''}".rstrip(": ")
        click.echo(printable(text))
    if op["state"] != "succeeded":
        sys.exit(1)


@click.group(help=__doc__.split("\n\n")[0])
@click.option(
    "--profile",
    envvar="PANELCTL_PROFILE",
    default="default",
    show_default=True,
    help="The profile (panel URL and token) to use.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.version_option(package_name="unified-hosting-panel", prog_name="panelctl")
@click.pass_context
def main(ctx: click.Context, profile: str, as_json: bool) -> None:
    ctx.obj = State(profile, as_json)


@main.command()
@click.option("--url", required=True, help="The panel's address, e.g. https://panel.example.com")
@click.option(
    "--token-stdin",
    is_flag=True,
    help="Read the token from standard input (e.g. from a secret store in a pipe).",
)
@click.option(
    "--token",
    envvar="PANELCTL_TOKEN",
    hide_input=True,
    help="An API token (Account → API tokens). Prefer the prompt (asked for when not "
    "given), --token-stdin or PANELCTL_TOKEN: a command line is visible to other users.",
)
@click.pass_context
def login(ctx: click.Context, url: str, token_stdin: bool, token: str | None) -> None:
    """Check a token against the panel and keep it as a profile (file mode 0600)."""
    state: State = ctx.obj
    problem = config.url_problem(url)
    if problem:  # the token would cross the network in the clear, or go nowhere sensible
        raise click.BadParameter(problem, param_hint="--url")
    if token_stdin:
        token = sys.stdin.readline()
    elif token is None:
        token = click.prompt("Token", hide_input=True, err=True)
    elif ctx.get_parameter_source("token") is ParameterSource.COMMANDLINE:
        click.echo(
            "panelctl: warning: a token on the command line is visible in the process list "
            "and shell history; use the prompt, --token-stdin or PANELCTL_TOKEN.",
            err=True,
        )
    token = (token or "").strip()
    if not token:
        raise click.BadParameter("no token given", param_hint="--token")
    profile = config.Profile(state.profile_name, url.rstrip("/"), token)
    me = api_call(Client(profile).get, "me/")
    try:
        config.save(profile)
    except config.ConfigError as exc:
        fail(str(exc), 3)
    email = printable(me.get("email") if isinstance(me, dict) else "")
    click.echo(f"Logged in to {profile.url} as {email} (profile {profile.name}).")


@main.command()
@click.pass_obj
def logout(state: State) -> None:
    """Forget the profile's token (revoke the token itself in the panel)."""
    try:
        found = config.remove(state.profile_name)
    except config.ConfigError as exc:
        fail(str(exc), 3)
    click.echo(f"Profile {state.profile_name} removed." if found else "No such profile.")


@main.command()
@click.pass_obj
def profiles(state: State) -> None:
    """The configured profiles and their panels (never the tokens)."""
    try:
        rows = [{"profile": n, "url": u} for n, u in config.names()]
    except config.ConfigError as exc:
        fail(str(exc), 3)
    output(state, rows, ("profile", "url"))


@main.command()
@click.pass_obj
def whoami(state: State) -> None:
    """Who the token belongs to."""
    output(state, api_call(state.client.get, "me/"))


def resource_group(res: Resource) -> click.Group:
    @click.group(name=res.command, help=res.help)
    def group() -> None:
        pass

    @group.command(name="list")
    @click.option("--filter", "-f", "filters", multiple=True, help="field=value (repeatable).")
    @click.option("--search", help="Free-text search.")
    @click.option("--limit", type=click.IntRange(1), help="At most this many rows.")
    @click.pass_obj
    def list_(state: State, filters: tuple[str, ...], search: str | None, limit: int | None):
        params = {}
        for pair in filters:  # query strings are text: no JSON here
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise click.BadParameter(f"{pair!r} is not field=value", param_hint="--filter")
            params[key] = value
        if search:
            params["search"] = search
        rows = api_call(state.client.pages, f"{res.path}/", params, limit)
        output(state, rows, res.columns)

    @group.command()
    @click.argument("uuid", type=click.UUID)
    @click.pass_obj
    def show(state: State, uuid: UUID):
        output(state, api_call(state.client.get, f"{res.path}/{uuid}/"))

    if res.command == "operations":

        @group.command(name="follow")
        @click.argument("uuid", type=click.UUID)
        @click.option("--interval", default=0.5, show_default=True, help="Seconds between polls.")
        @click.pass_obj
        def follow_(state: State, uuid: UUID, interval: float):
            """Follow an operation to its end (progress bar and log lines)."""
            follow(state, api_call(state.client.get, f"operations/{uuid}/"), interval=interval)

        @group.command()
        @click.argument("uuid", type=click.UUID)
        @click.pass_obj
        def cancel(state: State, uuid: UUID):
            output(state, api_call(state.client.post, f"operations/{uuid}/cancel/"))

        return group

    @group.command()
    @click.option("--set", "pairs", multiple=True, help="field=value (repeatable; JSON values).")
    @click.option("--data", "raw", help="The whole body as a JSON object.")
    @click.option("--wait/--no-wait", default=True, help="Follow an operation it starts.")
    @click.option("--interval", default=0.5, show_default=True, help="Seconds between polls.")
    @click.pass_obj
    def create(state: State, pairs, raw, wait: bool, interval: float):
        body = api_call(state.client.post, f"{res.path}/", parse_pairs(pairs, raw))
        _output_unless_followed(state, body, wait)
        _maybe_follow(state, body, wait, interval)

    @group.command()
    @click.argument("uuid", type=click.UUID)
    @click.option("--set", "pairs", multiple=True, help="field=value (repeatable; JSON values).")
    @click.option("--data", "raw", help="The changes as a JSON object.")
    @click.option("--wait/--no-wait", default=True, help="Follow an operation it starts.")
    @click.option("--interval", default=0.5, show_default=True)
    @click.pass_obj
    def update(state: State, uuid: UUID, pairs, raw, wait: bool, interval: float):
        body = api_call(state.client.patch, f"{res.path}/{uuid}/", parse_pairs(pairs, raw))
        _output_unless_followed(state, body, wait)
        _maybe_follow(state, body, wait, interval)

    @group.command()
    @click.argument("uuid", type=click.UUID)
    @click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
    @click.option("--wait/--no-wait", default=True, help="Follow the deletion's operation.")
    @click.option("--interval", default=0.5, show_default=True)
    @click.pass_obj
    def delete(state: State, uuid: UUID, yes: bool, wait: bool, interval: float):
        if not yes:
            click.confirm(f"Delete {res.command} {uuid}?", abort=True, err=True)
        body = api_call(state.client.delete, f"{res.path}/{uuid}/")
        if is_operation(body):
            _maybe_follow(state, body, wait, interval, echo=True)
        elif state.as_json:
            output(state, {"deleted": str(uuid)})
        else:
            click.echo(f"Deleted {uuid}.")

    @group.command()
    @click.argument("uuid", type=click.UUID)
    @click.argument("name", callback=_action_name)
    @click.option("--set", "pairs", multiple=True, help="field=value (repeatable; JSON values).")
    @click.option("--data", "raw", help="The body as a JSON object.")
    @click.option("--wait/--no-wait", default=True, help="Follow an operation it starts.")
    @click.option("--interval", default=0.5, show_default=True)
    @click.pass_obj
    def action(state: State, uuid: UUID, name: str, pairs, raw, wait: bool, interval: float):
        """Run an action (apply, test-connection, power, publish ...) and follow the
        operation it starts."""
        path = f"{res.path}/{uuid}/{name}/"
        body = api_call(state.client.post, path, parse_pairs(pairs, raw))
        _maybe_follow(state, body, wait, interval, echo=True)

    return group


def _will_follow(body, wait: bool) -> bool:
    return is_operation(body) and wait and body["state"] not in FINISHED


def _output_unless_followed(state: State, body, wait: bool) -> None:
    """With --json, a followed operation prints one document: its end (``follow``)."""
    if not (state.as_json and _will_follow(body, wait)):
        output(state, body)


def _maybe_follow(state: State, body, wait: bool, interval: float, *, echo: bool = False):
    if _will_follow(body, wait):
        follow(state, body, interval=interval)
    elif is_operation(body) and body["state"] in ("failed", "cancelled"):
        if echo:
            output(state, body)
        sys.exit(1)
    elif echo:
        output(state, body)


for _resource in RESOURCES:
    main.add_command(resource_group(_resource))
