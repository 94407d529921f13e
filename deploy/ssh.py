"""Talking to a device through the system's OpenSSH client (`ssh`, and `rsync` or `scp` to copy),
so the user's ~/.ssh/config, agent, jump hosts and known_hosts apply as they expect. Host keys
are always checked: an unknown key is refused unless accept_new_host_key (trust on first use),
a changed one always. ssh's complaints become one-line DeployErrors naming the step."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .errors import DeployError

CONNECT_TIMEOUT_S = 10
UNREACHABLE_SIGNS = (
    "Connection refused",
    "No route to host",
    "Could not resolve hostname",
    "Connection timed out",
    "Network is unreachable",
    "Operation timed out",
    "Connection closed by",
    "Connection reset",
)


@dataclass(frozen=True)
class SshTarget:
    """ssh://[user@]host[:port][/path]. The path is absolute, '~/...' is under the login's home,
    and none means ~/edgepack. host may be an alias from the user's ssh config."""

    host: str
    user: str | None = None
    port: int | None = None
    path: str = "edgepack"

    @classmethod
    def parse(cls, url: str) -> SshTarget:
        parts = urlsplit(url)
        if parts.scheme != "ssh" or not parts.hostname:
            raise DeployError(
                url,
                "target",
                "expected ssh://[user@]host[:port][/path], e.g. ssh://pi@raspberrypi.local/home/pi/edgepack",
            )
        try:
            port = parts.port
        except ValueError:
            raise DeployError(url, "target", "the port must be a number from 1 to 65535") from None
        path = unquote(parts.path)
        if path.startswith("/~/"):
            path = path[3:]
        elif path in ("", "/", "/~"):
            path = "edgepack"
        if "'" in path or "\n" in path:
            raise DeployError(url, "target", "the remote path may not contain quotes or newlines")
        return cls(host=parts.hostname, user=unquote(parts.username or "") or None, port=port,
                   path=path.rstrip("/") or "/")  # fmt: skip

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def display(self) -> str:
        return self.destination + (f":{self.port}" if self.port else "")

    def url(self) -> str:
        where = self.path if self.path.startswith("/") else f"/~/{self.path}"
        return f"ssh://{self.display}{where}"


@dataclass(frozen=True)
class SshOptions:
    """config: an ssh config file instead of ~/.ssh/config (ssh -F). extra: more -o settings."""

    config: Path | None = None
    accept_new_host_key: bool = False
    connect_timeout_s: int = CONNECT_TIMEOUT_S
    extra: tuple[str, ...] = field(default_factory=tuple)

    def args(self) -> list[str]:
        """Options shared by ssh, scp and rsync -e. Given on the command line, they override
        the config file, so StrictHostKeyChecking cannot be relaxed to 'no' there by accident."""
        checking = "accept-new" if self.accept_new_host_key else "yes"
        args = ["-F", str(self.config)] if self.config else []
        args += ["-o", "BatchMode=yes", "-o", f"StrictHostKeyChecking={checking}",
                 "-o", f"ConnectTimeout={self.connect_timeout_s}",
                 "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"]  # fmt: skip
        for option in self.extra:
            args += ["-o", option]
        return args


def _ssh_argv(target: SshTarget, options: SshOptions) -> list[str]:
    return ["ssh", *options.args(), *(["-p", str(target.port)] if target.port else [])]


def run_remote(
    target: SshTarget,
    options: SshOptions,
    step: str,
    script: str,
    *args: str,
    timeout_s: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a POSIX sh script on the device (sent on stdin, so nothing needs quoting but args).
    Raises DeployError for ssh's own failures (exit 255); returns the script's result."""
    remote = "sh -s -- " + " ".join(shlex.quote(a) for a in args)
    argv = [*_ssh_argv(target, options), target.destination, remote]
    try:
        done = subprocess.run(
            argv, input=script, capture_output=True, text=True, timeout=timeout_s, errors="replace"
        )
    except subprocess.TimeoutExpired:
        raise DeployError(target.display, step, f"no answer within {timeout_s:.0f} s") from None
    except FileNotFoundError:
        raise DeployError(target.display, step, "the ssh client is not installed here") from None
    if done.returncode == 255:
        message = explain_ssh_failure(done.stderr, target)
        # Host keys, reachability and logins are settled when connecting, whatever came next.
        raise DeployError(target.display, "connect" if _at_connect(message) else step, message)
    return done


def _at_connect(message: str) -> bool:
    return message.startswith(("the host key", "cannot reach")) or "refused the login" in message


def explain_ssh_failure(stderr: str, target: SshTarget) -> str:
    """ssh's stderr as one line that says what went wrong and what to do."""
    where = f"[{target.host}]:{target.port}" if target.port else target.host
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr or "Host key for" in stderr:
        return (
            f"the host key of {target.display} has CHANGED since it was recorded in known_hosts "
            "(another machine at that address, or a re-flashed device); refused. If you "
            f"re-flashed it, remove the old key with: ssh-keygen -R '{where}'"
        )
    if "Host key verification failed" in stderr or "host key is known" in stderr:
        return (
            f"the host key of {target.display} is not in known_hosts, so it cannot be checked; "
            f"connect once with `ssh {target.destination}` and compare the fingerprint, or pass "
            "--accept-new-host-key to trust it on first use"
        )
    for sign in UNREACHABLE_SIGNS:
        if sign in stderr:
            return f"cannot reach {target.display}: {_line_with(stderr, sign)}"
    if "Permission denied" in stderr:
        return (
            f"{target.display} refused the login ({_line_with(stderr, 'Permission denied')}); "
            f"install your key there with ssh-copy-id {target.destination}"
        )
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return f"ssh failed: {lines[-1].strip() if lines else 'exit 255 with no message'}"


def _line_with(text: str, sign: str) -> str:
    return next(line.strip() for line in text.splitlines() if sign in line)


def has_rsync() -> bool:
    return shutil.which("rsync") is not None


def upload(
    target: SshTarget,
    options: SshOptions,
    folder: Path,
    remote_dir: str,
    *,
    rsync: bool,
    timeout_s: float | None = None,
) -> None:
    """Copy folder's contents into remote_dir (which exists): rsync when both ends have it
    (resumable, only what differs), else scp. remote_dir is relative to the login's home or
    absolute."""
    if rsync:
        shell = shlex.join(_ssh_argv(target, options))
        argv = ["rsync", "-a", "--delete", "-e", shell, f"{folder}/",
                f"{target.destination}:{shlex.quote(remote_dir)}/"]  # fmt: skip
    else:
        port = ["-P", str(target.port)] if target.port else []
        sources = [str(p) for p in sorted(folder.iterdir())]
        argv = ["scp", "-q", "-r", "-p", *options.args(), *port, *sources,
                f"{target.destination}:{remote_dir}/"]  # fmt: skip
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise DeployError(target.display, "upload", f"not done within {timeout_s:.0f} s") from None
    if done.returncode != 0:
        err = done.stderr
        if "No space left" in err:
            raise DeployError(
                target.display, "disk", f"no space left on the device in {remote_dir}"
            )
        if done.returncode == 255 or "ssh:" in err or "Host key" in err:
            raise DeployError(target.display, "upload", explain_ssh_failure(err, target))
        lines = [line.strip() for line in err.splitlines() if line.strip()]
        first = next((line for line in lines if line.startswith(("rsync:", "scp:"))), None)
        reason = first or (lines[-1] if lines else f"exit {done.returncode}")
        raise DeployError(target.display, "upload", f"{argv[0]} failed: {reason}")
