"""Servers run as an unprivileged system user when LeadScore runs as root (as CI does).

The user (`LEADSCORE_SERVICE_USER`, default `leadscore`) is created on first use. The state directory is its
owner's alone (0700), so a server's folder that the user must write is placed under /var/lib/leadscore/<hash of
the state directory>/<server> (0700, the user's) and linked from the state directory; `infra down --purge`
removes it with the rest. PostgreSQL, Redis, the broker, MLflow, the Evidently UI and the scoring service run this
way; Prometheus as Debian's `prometheus` user.

The Python servers need an interpreter the user may run. Where the venv's is out of its reach (pyenv's under /root,
0700), `python_for` copies the base interpreter (binary, libpython, standard library; no site-packages) once under
RELOCATED_ROOT/python/ and makes a venv beside it whose site-packages is this venv's (a link): the same packages,
an interpreter the user can start. When even that cannot work (the venv or the checkout unreadable by the user),
the server runs as we do and its log says why.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from infra.config import Settings
from infra.process import RunAs, ServiceError, run

RELOCATED_ROOT = Path("/var/lib/leadscore")
log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class Interpreter:
    """A Python to start a server with, and what its environment must add (a copied interpreter's libpython)."""

    python: Path
    env: dict[str, str] = field(default_factory=dict)
    why_not: str = ""  # set when the user cannot run any: the server runs as we do, for this reason


def _open_up(root: Path) -> None:
    """Folders 0755, files 0755 where executable else 0644: what a system interpreter's install looks like."""
    for path in (root, *root.rglob("*")):
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        os.chmod(path, 0o755 if path.is_dir() or mode & 0o100 else 0o644)


def _copied_base() -> Path:
    """The base interpreter of this venv copied under RELOCATED_ROOT/python/<key>/ (once; reused after)."""
    base = Path(sys.base_prefix).resolve()
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    key = hashlib.sha1(f"{base}|{sys.version}".encode()).hexdigest()[:12]
    target = RELOCATED_ROOT / "python" / key
    if (target / ".complete").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(RELOCATED_ROOT, 0o755)
    os.chmod(target.parent, 0o755)
    tmp = target.with_name(f"{key}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "bin").mkdir(parents=True)
    (tmp / "lib").mkdir()
    shutil.copy2(base / "bin" / ver, tmp / "bin" / ver)
    for lib in (base / "lib").glob("libpython*"):
        shutil.copy2(lib, tmp / "lib" / lib.name, follow_symlinks=False)
    shutil.copytree(base / "lib" / ver, tmp / "lib" / ver, symlinks=True,
                    ignore=lambda folder, names: [n for n in names if Path(folder) == base / "lib" / ver
                                                  and n in ("site-packages", "test", "idlelib", "turtledemo")])
    _open_up(tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    (target / ".complete").write_text(str(base))
    os.chmod(target / ".complete", 0o644)
    return target


def _shadow_venv(base: Path) -> Path:
    """A venv over the copied interpreter whose site-packages is this venv's (linked), under RELOCATED_ROOT/venv/."""
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    venv = RELOCATED_ROOT / "venv" / hashlib.sha1(str(Path(sys.prefix).resolve()).encode()).hexdigest()[:12]
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    (venv / "lib" / ver).mkdir(parents=True, exist_ok=True)
    (venv / "pyvenv.cfg").write_text(f"home = {base / 'bin'}\ninclude-system-site-packages = false\n"
                                     f"version = {sys.version_info.major}.{sys.version_info.minor}."
                                     f"{sys.version_info.micro}\n")
    links = {venv / "bin" / ver: base / "bin" / ver,
             venv / "lib" / ver / "site-packages": Path(sys.prefix) / "lib" / ver / "site-packages"}
    for link, to in links.items():
        if link.is_symlink() and Path(os.readlink(link)) == to:
            continue
        if link.is_symlink():
            link.unlink()
        link.symlink_to(to)
    os.chmod(venv.parent, 0o755)
    _open_up(venv)
    return venv / "bin" / ver


def _runs(python: Path, env: dict[str, str], user: RunAs) -> str:
    """'' if `user` can start `python` and import LeadScore with it, else the reason (its last error line)."""
    from infra.config import REPO_ROOT

    try:
        done = subprocess.run([str(python), "-c", "import infra.config, yaml"], capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL, cwd=REPO_ROOT, env={**os.environ, **env},
                              user=user.uid, group=user.gid, extra_groups=[])
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    lines = (done.stderr or done.stdout).strip().splitlines()
    return "" if done.returncode == 0 else (lines[-1] if lines else f"exit {done.returncode}")


def python_for(user: RunAs | None) -> Interpreter:
    """The venv's Python as `user` may run it (None: us, the venv's own). See the module docstring."""
    here = Path(sys.executable)
    if user is None or user.uid == os.geteuid():
        return Interpreter(here)
    if reaches(here, user) and not _runs(here, {}, user):
        return Interpreter(here)
    try:
        base = _copied_base()
        python = _shadow_venv(base)
    except OSError as exc:
        return Interpreter(here, why_not=f"cannot copy the interpreter {sys.base_prefix} for {user.name}: {exc}")
    env = {"LD_LIBRARY_PATH": str(base / "lib")}  # the binary's RUNPATH names the original, out of reach
    why = _runs(python, env, user)
    if why:
        return Interpreter(here, why_not=f"{user.name} cannot run LeadScore's Python from {python} ({why}); "
                                         "is the checkout or its venv readable by others?")
    return Interpreter(python, env)
