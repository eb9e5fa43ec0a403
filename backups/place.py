"""Put a restored file or folder in place below a customer's home, as root, without
following any link the customer made.

Run as ``python3 -c SCRIPT SRC DEST HOME USER TOKEN`` by the restores (constant text,
standard library only). The customer owns every folder below the home and can run code
there while this runs, so nothing below the home is reached by a path: each folder is
opened with O_NOFOLLOW|O_DIRECTORY from the one before, missing ones are made and given
to USER, and the final moves are renames relative to the held folder (a rename never
follows its last component). DEST itself may not be a symbolic link. What was at DEST is
moved aside to DEST.panel-old-TOKEN first and removed (without following links) once
the new one is in place. A message on stderr and exit 1 when refused or failed.
"""

import errno
import os
import pwd
import shutil
import stat
import sys

DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def fail(message: str) -> None:
    print(message, file=sys.stderr)
    sys.exit(1)


def held(fd: int, name: str = "") -> str:
    # /proc/self/fd/N is the folder held open, whatever its path now points at.
    return f"/proc/self/fd/{fd}" + (f"/{name}" if name else "")


def remove(fd: int, name: str) -> None:
    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(held(fd, name))  # fd-based on Linux: never follows a link
    else:
        os.unlink(name, dir_fd=fd)


def copy_in(src: str, fd: int, name: str) -> None:
    """SRC on another file system: copied into a root-only folder made in the held one
    (the customer cannot enter it), owners and modes as in SRC, then renamed to NAME."""
    box = f"{name}.panel-new"
    os.mkdir(box, 0o700, dir_fd=fd)
    box_fd = os.open(box, DIR, dir_fd=fd)
    try:
        inner = held(box_fd, "t")
        if os.path.isdir(src) and not os.path.islink(src):
            shutil.copytree(src, inner, symlinks=True)
            for root, dirs, files in os.walk(src):
                for n in [""] + dirs + files:
                    s = os.path.join(root, n) if n else root
                    st = os.lstat(s)
                    d = os.path.join(inner, os.path.relpath(s, src))
                    os.chown(d, st.st_uid, st.st_gid, follow_symlinks=False)
                    if not stat.S_ISLNK(st.st_mode):
                        os.chmod(d, stat.S_IMODE(st.st_mode))
        else:
            shutil.copy2(src, inner, follow_symlinks=False)
            st = os.lstat(src)
            os.chown(inner, st.st_uid, st.st_gid, follow_symlinks=False)
        os.rename("t", name, src_dir_fd=box_fd, dst_dir_fd=fd)
    finally:
        os.close(box_fd)
        remove(fd, box)


def main(src: str, dest: str, home: str, user: str, token: str) -> None:
    account = pwd.getpwnam(user)
    home, dest = os.path.normpath(home), os.path.normpath(dest)
    if not dest.startswith(home + "/"):
        fail(f"{dest} is not inside {home}")
    parts = dest[len(home) + 1 :].split("/")
    if any(p in ("", ".", "..") for p in parts):
        fail(f"{dest} is not a plain path")
    fd = os.open(home, DIR)
    here = home
    for name in parts[:-1]:
        here = f"{here}/{name}"
        try:
            os.mkdir(name, 0o755, dir_fd=fd)
            made = True
        except FileExistsError:
            made = False
        try:
            sub = os.open(name, DIR, dir_fd=fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                fail(f"{here} is a symbolic link or not a folder: refused, nothing restored")
            raise
        if made:
            os.fchown(sub, account.pw_uid, account.pw_gid)
        os.close(fd)
        fd = sub
    name = parts[-1]
    aside = f"{name}.panel-old-{token}"
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISLNK(st.st_mode):
        fail(f"{dest} is a symbolic link: refused, nothing restored")
    if st is not None:
        os.rename(name, aside, src_dir_fd=fd, dst_dir_fd=fd)
    try:
        try:
            os.rename(src, name, dst_dir_fd=fd)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            copy_in(src, fd, name)
    except OSError as exc:
        if st is not None:
            os.rename(aside, name, src_dir_fd=fd, dst_dir_fd=fd)
        fail(f"Could not move the restored files to {dest}: {exc.strerror}")
    if st is not None:
        remove(fd, aside)


if __name__ == "__main__":
    main(*sys.argv[1:6])
