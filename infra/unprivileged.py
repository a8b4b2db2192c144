"""Servers run as an unprivileged system user when LeadScore runs as root (as CI does).

The user (`LEADSCORE_SERVICE_USER`, default `leadscore`) is created on first use. The state directory is its
owner's alone (0700), so a server's folder that the user must write is placed under /var/lib/leadscore/<hash of
the state directory>/<server> (0700, the user's) and linked from the state directory; `infra down --purge`
removes it with the rest. PostgreSQL, Redis and the broker run this way; Prometheus as Debian's `prometheus` user.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from infra.config import Settings
from infra.process import RunAs, ServiceError, run

RELOCATED_ROOT = Path("/var/lib/leadscore")


def service_user(settings: Settings) -> RunAs | None:
    """The account servers run under: None when not root (they run as we do), else the service user."""
    if os.geteuid() != 0:
        return None
    name = settings.service_user
    try:
        return RunAs.lookup(name)
    except KeyError:
        created = subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                                  "--shell", "/usr/sbin/nologin", name], capture_output=True, text=True)
        if created.returncode != 0:
            raise ServiceError(f"cannot create system user {name!r} to run servers as non-root: "
                               f"{created.stderr.strip()}") from None
        return RunAs.lookup(name)


def reaches(path: Path, user: RunAs | None, flag: str = "-x") -> bool:
    """True if `user` (None: us) may use `path` (`test -x`, `-r`, ...)."""
    return user is None or run(["test", flag, str(path)], run_as=user).returncode == 0


def private_home(settings: Settings, name: str, user: RunAs | None) -> Path:
    """The server's folder, writable by `user` and nobody else; its real (resolved) path.

    Not root: `<state>/<name>` as is. Root: relocated under RELOCATED_ROOT when the user cannot reach the state
    directory (a folder from an earlier version, run as root, is moved there first), owned by the user."""
    home = settings.state_dir / name
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    if user is None:
        home.mkdir(parents=True, exist_ok=True)
        return home
    if not home.is_symlink() and not reaches(settings.state_dir, user):
        key = hashlib.sha1(str(settings.state_dir.resolve()).encode()).hexdigest()[:12]
        target = RELOCATED_ROOT / key / name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(RELOCATED_ROOT, 0o755)
        os.chmod(target.parent, 0o755)
        if home.is_dir():
            shutil.move(str(home), str(target))
        target.mkdir(mode=0o700, exist_ok=True)
        home.symlink_to(target, target_is_directory=True)
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    real = home.resolve()
    for path in (real, *real.rglob("*")):
        os.chown(path, user.uid, user.gid, follow_symlinks=False)
    return real


def reachable_binary(binary: Path, user: RunAs | None, name: str) -> Path:
    """`binary` if `user` may run it, else a copy under RELOCATED_ROOT it may run."""
    if reaches(binary, user):
        return binary
    copy = RELOCATED_ROOT / "bin" / name
    if not copy.exists():
        copy.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(RELOCATED_ROOT, 0o755)
        os.chmod(copy.parent, 0o755)
        shutil.copy2(binary, copy)
        os.chmod(copy, 0o755)
    return copy
