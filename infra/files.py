"""File modes under the state directory: what a security review checks first.

Every folder the product makes is 0700 and every file 0600 (its processes run with umask 077; PostgreSQL and
Prometheus, which run as their own users, keep their folders to those users the same way). `loose_files` lists
what anyone but the owner could read, so a test (and `leadscore infra files`) can say so.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def loose_files(root: Path) -> list[tuple[Path, str]]:
    """(path, mode) of every folder and regular file under `root` that its group or others may use; symlinks are
    followed once (the relocated PostgreSQL and Prometheus folders), sockets and pipes are left out."""
    found: list[tuple[Path, str]] = []
    seen: set[tuple[int, int]] = set()
    todo = [root]
    while todo:
        path = todo.pop()
        try:
            info = path.stat()  # follows a symlink
        except FileNotFoundError:  # gone while we looked (a server rotating a file)
            continue
        if (info.st_dev, info.st_ino) in seen:
            continue
        seen.add((info.st_dev, info.st_ino))
        if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
            continue
        if info.st_mode & 0o077:
            found.append((path, stat.filemode(info.st_mode)))
        if stat.S_ISDIR(info.st_mode):
            try:
                todo.extend(Path(entry.path) for entry in os.scandir(path))
            except PermissionError:
                found.append((path, "unreadable"))
    return sorted(found)
