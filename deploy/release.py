"""One device's releases, Capistrano-style: PATH/releases/<bundle id>/ holds an installed bundle,
PATH/current links the running one and PATH/previous the one before, each switched by an atomic
rename, so a failed step leaves the previous release current and a rollback is one link.

deploy_one() walks the steps (connect, check, upload, install, switch) and says which it
reached; deploying the bundle that is already current changes nothing.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DeployError
from .ssh import SshOptions, SshTarget, has_rsync, run_remote, upload

KEEP_RELEASES = 3  # installed releases kept on a device (current and previous among them)
INSTALL_TIMEOUT_S = 1800  # a Pi Zero installing onnxruntime from an SD card is slow
STEPS = ("connect", "check", "upload", "install", "switch", "bench")

PROBE = r"""
root=$1 id=$2 python=$3
mkdir -p "$root/releases" 2>/dev/null || { echo "error=cannot create $root/releases"; exit 0; }
echo "machine=$(uname -m)"
if command -v "python$python" >/dev/null 2>&1; then py="python$python"; else py=python3; fi
echo "python=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)"
echo "venv=$("$py" -c 'import ensurepip' >/dev/null 2>&1 && echo yes || echo no)"
echo "rsync=$(command -v rsync >/dev/null 2>&1 && echo yes || echo no)"
echo "free_kb=$(df -Pk "$root/releases" | awk 'NR==2 {print $4}')"
echo "current=$(readlink "$root/current" 2>/dev/null)"
echo "installed=$(cat "$root/releases/$id/.installed" 2>/dev/null)"
"""
PREPARE = r"""
root=$1 id=$2
rm -rf "$root/releases/$id" && mkdir -p "$root/releases/$id"
"""
INSTALL = r"""
root=$1 id=$2
sh "$root/releases/$id/install.sh" 2>&1
status=$?
[ $status -eq 0 ] || rm -rf "$root/releases/$id"
exit $status
"""
# ln -sfn writes a new link, mv -T renames it over the old one in one rename(2): readers see
# the old release or the new one, never no link.
SWITCH = r"""
root=$1 id=$2 keep=$3
cd "$root" || exit 1
[ -f "releases/$id/.installed" ] || { echo "releases/$id is not installed" >&2; exit 1; }
old=$(readlink current 2>/dev/null || true)
ln -sfn "releases/$id" current.new && mv -T current.new current || exit 1
if [ -n "$old" ] && [ "$old" != "releases/$id" ]; then
    ln -sfn "$old" previous.new && mv -T previous.new previous
fi
prev=$(readlink previous 2>/dev/null || true)
ls -1t releases | tail -n +$((keep + 1)) | while read -r name; do
    case "releases/$name" in "releases/$id" | "$prev") ;; *) rm -rf "releases/$name" ;; esac
done
"""
ROLLBACK = r"""
root=$1
cd "$root" 2>/dev/null || { echo "no edgepack releases at $root" >&2; exit 3; }
old=$(readlink current 2>/dev/null || true)
prev=$(readlink previous 2>/dev/null || true)
[ -n "$prev" ] || { echo "no previous release to roll back to" >&2; exit 3; }
[ -f "$prev/.installed" ] || { echo "the previous release $prev is gone" >&2; exit 3; }
ln -sfn "$prev" current.new && mv -T current.new current || exit 1
[ -z "$old" ] || { ln -sfn "$old" previous.new && mv -T previous.new previous; }
echo "current=$prev"
"""


@dataclass
class HostResult:
    """How far one host got: the last step reached, the time it took, and the error if any."""

    host: str
    step: str = "connect"
    ok: bool = False
    seconds: float = 0.0
    release: str | None = None
    changed: bool = False  # False: the bundle was already current (a no-op)
    p50_ms: float | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _probe(target: SshTarget, options: SshOptions, bundle: dict[str, Any]) -> dict[str, str]:
    done = run_remote(
        target, options, "connect", PROBE, target.path, bundle["id"], bundle["target"]["python"]
    )
    facts = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    if done.returncode != 0 or "error" in facts:
        reason = facts.get("error") or done.stderr.strip() or f"exit {done.returncode}"
        raise DeployError(target.display, "connect", reason)
    return facts


def check_device(target: SshTarget, facts: dict[str, str], bundle: dict[str, Any]) -> None:
    """Refuse before copying anything: wrong architecture or Python, no venv, no room."""
    want = bundle["target"]
    host = target.display
    if facts.get("machine") != want["machine"]:
        raise DeployError(
            host, "check",
            f"wrong architecture: the bundle is for {want['machine']}, the device is "
            f"{facts.get('machine') or 'unknown'}; bundle for this board's profile",
        )  # fmt: skip
    if facts.get("python") != want["python"]:
        raise DeployError(
            host, "check",
            f"wrong Python: the bundle is for Python {want['python']}, the device has "
            f"{facts.get('python') or 'no python3'}; rebuild the bundle with "
            f"--python {facts.get('python') or 'X.Y'}",
        )  # fmt: skip
    if facts.get("venv") != "yes":
        raise DeployError(
            host, "check",
            f"python3-venv is missing on the device: sudo apt install python{want['python']}-venv "
            "(or python3-venv), then deploy again",
        )  # fmt: skip
    need = bundle["wheel_bytes"] + bundle["install_bytes_estimate"]
    free_kb = facts.get("free_kb", "")
    if free_kb.isdigit() and int(free_kb) * 1024 < need:
        raise DeployError(
            host, "disk",
            f"full disk: the release needs about {need / 1e6:.0f} MB under {target.path} and the "
            f"device has {int(free_kb) / 1e3:.0f} MB free; free some space (old releases are in "
            f"{target.path}/releases)",
        )  # fmt: skip


def _install_failure(target: SshTarget, output: str) -> DeployError:
    """The install.sh line `edgepack-error: STEP: MESSAGE` as a DeployError for that step."""
    for line in output.splitlines():
        if line.startswith("edgepack-error: "):
            step, _, message = line[len("edgepack-error: ") :].partition(": ")
            return DeployError(target.display, step, message)
    last = [line for line in output.strip().splitlines() if line.strip()][-1:] or ["no output"]
    return DeployError(target.display, "install", f"install.sh failed: {last[0].strip()}")


def deploy_one(
    folder: Path,
    bundle: dict[str, Any],
    target: SshTarget,
    options: SshOptions,
    *,
    keep: int = KEEP_RELEASES,
) -> HostResult:
    """Install `bundle` (read_bundle of `folder`) on one device and make it current. A failed
    step does not raise: the result has ok False, the step and the error (one line)."""
    result = HostResult(host=target.display, release=bundle["id"])
    with _step_outcome(result):
        facts = _probe(target, options, bundle)
        release = f"releases/{bundle['id']}"
        if facts.get("current") == release and facts.get("installed") == bundle["id"]:
            result.step, result.ok = "switch", True  # already current: nothing to do
            return result
        result.step = "check"
        check_device(target, facts, bundle)
        if facts.get("installed") != bundle["id"]:
            result.step = "upload"
            remote_dir = f"{target.path}/{release}"
            run_remote(target, options, "upload", PREPARE, target.path, bundle["id"])
            upload(
                target,
                options,
                folder,
                remote_dir,
                rsync=has_rsync() and facts.get("rsync") == "yes",
            )
            result.step = "install"
            done = run_remote(
                target, options, "install", INSTALL, target.path, bundle["id"],
                timeout_s=INSTALL_TIMEOUT_S,
            )  # fmt: skip
            if done.returncode != 0:
                raise _install_failure(target, done.stdout + done.stderr)
        result.step = "switch"
        done = run_remote(target, options, "switch", SWITCH, target.path, bundle["id"], str(keep))
        if done.returncode != 0:
            raise DeployError(target.display, "switch", done.stderr.strip() or "link not switched")
        result.ok = result.changed = True
    return result


def rollback_one(target: SshTarget, options: SshOptions) -> HostResult:
    """Make the previous release current again (and the current one previous)."""
    result = HostResult(host=target.display, step="switch")
    with _step_outcome(result):
        done = run_remote(target, options, "rollback", ROLLBACK, target.path)
        if done.returncode != 0:
            raise DeployError(target.display, "rollback", done.stderr.strip() or "not switched")
        current = done.stdout.strip().rpartition("=")[2]
        result.release = current.rpartition("/")[2]
        result.ok = result.changed = True
    return result


@contextlib.contextmanager
def _step_outcome(result: HostResult) -> Iterator[None]:
    """Time the steps inside and turn a DeployError into the result's failed step and error:
    one host's failure never raises out of a fleet run."""
    start = time.monotonic()
    try:
        yield
    except DeployError as exc:
        result.step, result.error = exc.step, exc.message
    finally:
        result.seconds = time.monotonic() - start


def current_release(target: SshTarget, options: SshOptions) -> str | None:
    """The id of the release PATH/current links to, or None."""
    done = run_remote(
        target, options, "connect", 'readlink "$1/current" 2>/dev/null || true', target.path
    )
    return done.stdout.strip().rpartition("/")[2] or None
