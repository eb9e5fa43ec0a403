"""Put a restored file or folder in place below a customer's home, as root, without
following any link the customer made.

Run as ``python3 -c SCRIPT SRC DEST HOME USER TOKEN`` by the restores (constant text,
standard library only). The customer owns every folder below the home and can run code
there while this runs, so nothing below the home is reached by a path: each folder is
opened with O_NOFOLLOW|O_DIRECTORY from the one before, missing ones are made and given
to USER, and the final moves are renames relative to the held folder (a rename never
follows its last component). DEST itself may not be a symbolic link. The new copy is
readied beside DEST (in a root-only DEST.panel-new-TOKEN: moved there, or copied when SRC
is on another file system), then what was at DEST is moved aside to DEST.panel-old-TOKEN,
the new one renamed into place and the old one removed (without following links). A
message on stderr and exit 1 when refused or failed; nothing is half placed.
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
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:  # the customer moved it away: theirs now
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(held(fd, name))  # fd-based on Linux: never follows a link
    else:
        os.unlink(name, dir_fd=fd)


def copy_tree(src: str, dst: str) -> None:
    """Copy SRC to DST (which does not exist): folders, files and symbolic links (as
    links, never followed), each with SRC's owner, group, mode and times. The first error
    (e.g. no space left) stops it."""
    st = os.lstat(src)
    if stat.S_ISDIR(st.st_mode):
        os.mkdir(dst, 0o700)
        with os.scandir(src) as entries:
            for entry in entries:
                copy_tree(entry.path, os.path.join(dst, entry.name))
    elif stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISREG(st.st_mode):
        shutil.copyfile(src, dst, follow_symlinks=False)
    else:  # a fifo or socket a customer's program left
        os.mknod(dst, st.st_mode, st.st_rdev)
    # The owner first: chown clears set-id bits, the mode sets them again.
    os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


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
    # The new copy is readied first, inside a root-only folder made in the held one (the
    # customer can neither enter it nor, unseen, swap in a folder of their own): moved
    # there, or copied when SRC is on another file system. Only then is the old one
    # moved aside, so a failed copy (no space left ...) leaves the destination as it was.
    box = f"{name}.panel-new-{token}"
    os.mkdir(box, 0o700, dir_fd=fd)
    box_fd = os.open(box, DIR, dir_fd=fd)
    try:
        if os.fstat(box_fd).st_uid != 0:
            fail(f"{dest}: the staging folder was replaced: refused, nothing restored")
        try:
            os.rename(src, "t", dst_dir_fd=box_fd)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            copy_tree(src, held(box_fd, "t"))
        if st is not None:
            os.rename(name, aside, src_dir_fd=fd, dst_dir_fd=fd)
        try:
            os.rename("t", name, src_dir_fd=box_fd, dst_dir_fd=fd)
        except OSError:
            if st is not None:
                os.rename(aside, name, src_dir_fd=fd, dst_dir_fd=fd)
            raise
    except OSError as exc:
        fail(f"Could not move the restored files to {dest}: {exc.strerror or exc}")
    finally:
        os.close(box_fd)
        remove(fd, box)
    if st is not None:
        remove(fd, aside)


if __name__ == "__main__":
    main(*sys.argv[1:6])
