"""Check supervisord program files with supervisord's own parser, on the server.

Run as ``python3 -c SCRIPT MAIN_CONF PROGRAM_DIR`` by the apply engine (constant text): stdin
is a JSON object {path: text} of the program files of this run. Each is parsed alone, as
supervisord would parse it (user names, directories, log file paths, every option), and a
line ``@@bad PATH<TAB>why`` is printed for each it refuses. Exit 0 when all pass, 1 when one
is refused, 2 when MAIN_CONF does not include PROGRAM_DIR/*.conf.
"""

import configparser
import json
import os
import sys
import tempfile

from supervisor.options import ServerOptions


def included(main: str, directory: str) -> bool:
    parser = configparser.RawConfigParser(strict=False, inline_comment_prefixes=(";", "#"))
    parser.read(main)
    files = parser.get("include", "files", fallback="").split()
    return f"{directory}/*.conf" in files


def check(path: str, text: str) -> str:
    fd, name = tempfile.mkstemp(suffix=".conf")
    try:
        with os.fdopen(fd, "w") as f:
            f.write("[supervisord]\n" + text)
        options = ServerOptions()
        options.configfile = name
        try:
            options.process_config(do_usage=False)
        except ValueError as exc:
            return " ".join(str(exc).replace(name, path).split())
        if not options.process_group_configs:
            return "no [program:...] section"
        return ""
    finally:
        os.unlink(name)


def main() -> int:
    main_conf, directory = sys.argv[1], sys.argv[2].rstrip("/")
    if not included(main_conf, directory):
        print(f"{main_conf} does not include {directory}/*.conf: add it to [include] files")
        return 2
    bad = 0
    for path, text in sorted(json.load(sys.stdin).items()):
        why = check(path, text)
        if why:
            print(f"@@bad {path}\t{why}")
            bad = 1
    return bad


sys.exit(main())
