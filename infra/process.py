"""Start, find and stop the server processes LeadScore owns, by PID file, never by name."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


class ServiceError(RuntimeError):
    """A server could not be installed, started or stopped; `str()` is one line for the user."""


@dataclass(frozen=True)
class RunAs:
    """The account a server runs under (None: the current user)."""

    uid: int
    gid: int
    name: str

    @classmethod
    def lookup(cls, name: str) -> RunAs:
        entry = pwd.getpwnam(name)
        return cls(entry.pw_uid, entry.pw_gid, name)


def pid_alive(pid: int) -> bool:
    """True if a process with this PID exists (and is not a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def read_pid(pidfile: Path, expect: str) -> int | None:
    """The PID recorded in `pidfile` if that process still runs and its command line contains `expect`."""
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if pid_alive(pid) and expect in cmdline(pid):
        return pid
    return None


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def ensure_port_free(service: str, host: str, port: int, env_var: str) -> None:
    """Fail in one line, at once, if another process already holds the port we are about to use."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers are not "in use"
    try:
        probe.bind((host, port))
    except OSError as exc:
        raise ServiceError(
            f"{service}: port {host}:{port} is already in use by another process ({exc.strerror}); "
            f"stop that process or set {env_var} to a free port"
        ) from None
    finally:
        probe.close()


def spawn(
    argv: Sequence[str],
    log: Path,
    pidfile: Path | None,
    env: dict[str, str] | None = None,
    run_as: RunAs | None = None,
    cwd: Path | None = None,
) -> int:
    """Start a long-running server detached in its own session, output appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
            **_as_user(run_as),
        )
    if pidfile is not None:
        pidfile.write_text(f"{proc.pid}\n")
    return proc.pid


def run(argv: Sequence[str], run_as: RunAs | None = None, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a short command (initdb, pg_ctl) and capture its output."""
    return subprocess.run(list(argv), capture_output=True, text=True, env=env, timeout=timeout,
                          stdin=subprocess.DEVNULL, **_as_user(run_as))


def _as_user(run_as: RunAs | None) -> dict:
    if run_as is None or run_as.uid == os.geteuid():
        return {}
    return {"user": run_as.uid, "group": run_as.gid, "extra_groups": []}


def stop_pid(pid: int, sig: int = signal.SIGTERM, timeout: float = 20.0, group: bool = True) -> None:
    """Send `sig` (to the process group when `group`), wait for exit, SIGKILL after `timeout`."""
    def send(s: int) -> None:
        try:
            os.killpg(pid, s) if group else os.kill(pid, s)
        except ProcessLookupError:
            pass
        except PermissionError:
            os.kill(pid, s)

    send(sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    send(signal.SIGKILL)
    wait_until(lambda: not pid_alive(pid), 5.0, "process to die")


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.05,
               alive: Callable[[], bool] | None = None) -> None:
    """Poll `check` until true; fail if `timeout` passes or `alive` says the process died."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - a server that is still starting raises all sorts of things
            pass
        if alive is not None and not alive():
            raise ServiceError(f"{what}: the process exited during start-up")
        if time.monotonic() > deadline:
            raise ServiceError(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(interval)


def tail(path: Path, lines: int = 5) -> str:
    """The last `lines` non-empty lines of a log, joined with ' | ' for one-line errors."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    kept = [line.strip() for line in text if line.strip() and "GLIBC_2.39" not in line]
    return " | ".join(kept[-lines:]) or "(empty log)"
