"""Real OpenSSH servers on 127.0.0.1 for the deploy tests: `sshd -D -f CONFIG -p PORT` as child
processes, with throwaway host and user keys in a temp dir, stopped at the end; and bundles for
this machine (its Python and platform), built once per session.

Without sshd the tests skip with the reason, except under EDGEPACK_REQUIRE_ALL=1 (CI)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgepack.deploy.ssh import SshOptions, SshTarget
from tests.conftest import classifier_onnx

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")
START_TIMEOUT_S = 10
SSHD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # its logins' PATH


def require_or_skip(ok: bool, reason: str) -> None:
    if ok:
        return
    if os.environ.get("EDGEPACK_REQUIRE_ALL") == "1":
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _keygen(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgepack-test", "-f", str(path)],
        check=True,
    )
    return path.with_suffix(".pub").read_text().strip()


@dataclass
class SshServer:
    """One sshd on 127.0.0.1:port with its own host key; stop() ends it."""

    port: int
    host_key_pub: str
    process: subprocess.Popen
    log: Path

    def known_hosts_line(self) -> str:
        kind, key = self.host_key_pub.split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {key}\n"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_sshd(sshd: str, root: Path, authorized_keys: Path) -> SshServer:
    root.mkdir(parents=True)
    host_pub = _keygen(root / "host_key")
    port = _free_port()
    config = root / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1\n"
        f"HostKey {root / 'host_key'}\n"
        f"AuthorizedKeysFile {authorized_keys}\n"
        f"PidFile {root / 'sshd.pid'}\n"
        "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
        "Subsystem sftp internal-sftp\nLogLevel ERROR\n"
    )
    log = root / "sshd.log"
    process = subprocess.Popen(
        [sshd, "-D", "-e", "-f", str(config), "-p", str(port)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    server = SshServer(port, host_pub, process, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"sshd did not start: {log.read_text().strip()[-300:]}")


@dataclass
class SshLab:
    """Two loopback sshd servers, a client config that names them dev1 and dev2, and the
    known_hosts file that has their keys."""

    root: Path
    servers: list[SshServer]
    config: Path
    known_hosts: Path
    user_key: Path

    def options(self, **kwargs) -> SshOptions:
        return SshOptions(config=self.config, **kwargs)

    def target(self, index: int, path: str) -> SshTarget:
        return SshTarget.parse(f"ssh://dev{index + 1}{path}")

    def url(self, index: int, path: str) -> str:
        return f"ssh://{_login_name()}@127.0.0.1:{self.servers[index].port}{path}"

    def remote(self, index: int, command: str) -> str:
        """Run a command on a lab host with plain ssh (to look at what the deploy did)."""
        done = subprocess.run(
            ["ssh", "-F", str(self.config), f"dev{index + 1}", command],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout


def _login_name() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


@pytest.fixture(scope="session")
def ssh_lab(tmp_path_factory):
    sshd = next((p for p in SSHD_CANDIDATES if os.access(p, os.X_OK)), None)
    require_or_skip(sshd is not None, "sshd is not installed (apt-get install openssh-server)")
    require_or_skip(shutil.which("ssh") is not None, "the ssh client is not installed")
    root = tmp_path_factory.mktemp("ssh")
    user_pub = _keygen(root / "user_key")
    authorized = root / "authorized_keys"
    authorized.write_text(user_pub + "\n")
    if os.getuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    servers = []
    try:
        for index in range(2):
            try:
                servers.append(start_sshd(sshd, root / f"server{index + 1}", authorized))
            except RuntimeError as exc:
                require_or_skip(False, f"sshd cannot run here: {exc}")
        known_hosts = root / "known_hosts"
        known_hosts.write_text("".join(s.known_hosts_line() for s in servers))
        user = _login_name()
        hosts = "".join(
            f"Host dev{i + 1}\n  HostName 127.0.0.1\n  Port {s.port}\n  User {user}\n"
            for i, s in enumerate(servers)
        )
        config = root / "ssh_config"
        config.write_text(
            hosts + f"Host *\n  IdentityFile {root / 'user_key'}\n  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {known_hosts}\n  GlobalKnownHostsFile /dev/null\n"
            "  LogLevel ERROR\n"
        )
        yield SshLab(root, servers, config, known_hosts, root / "user_key")
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="session")
def device_python() -> str:
    """The X.Y of python3 on the lab's "device" (this machine, on sshd's default PATH), which
    the bundles are built for."""
    done = subprocess.run(
        ["env", "-i", f"PATH={SSHD_PATH}", "python3", "-c",
         "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


@pytest.fixture(scope="session")
def edgepack_wheel(tmp_path_factory) -> Path:
    from edgepack.deploy.bundle import build_edgepack_wheel

    return build_edgepack_wheel(tmp_path_factory.mktemp("own-wheel"))


def make_pack(folder: Path, seed: int) -> tuple[Path, object]:
    """A tiny ONNX classifier pack (a different model per seed) and its numpy reference."""
    from edgepack.cli.main import main

    folder.mkdir(parents=True, exist_ok=True)
    reference = classifier_onnx(folder / "model.onnx", seed=seed)
    pack = folder / f"classifier-{seed}.edgepack"
    assert main(["pack", str(folder / "model.onnx"), "-o", str(pack)]) == 0
    return pack, reference


@pytest.fixture(scope="session")
def host_bundles(tmp_path_factory, device_python, edgepack_wheel):
    """Two bundles for this machine (different packs, so different ids): the first resolves
    its wheels with pip as usual, the second only from the first's wheelhouse (offline)."""
    from edgepack.deploy.bundle import build_bundle
    from edgepack.deploy.target import host_target

    root = tmp_path_factory.mktemp("bundles")
    target = host_target(device_python)
    constraints = Path(__file__).resolve().parents[2] / "constraints.txt"
    packs, bundles = [], []
    for seed in (0, 1):
        pack, reference = make_pack(root / f"pack{seed}", seed)
        pip_args = [] if not bundles else ["--no-index", "--find-links", str(bundles[0] / "wheels")]
        out = root / f"bundle{seed}"
        build_bundle(
            pack, out, target=target, constraints=constraints, pip_args=pip_args,
            edgepack_wheel=edgepack_wheel,
        )  # fmt: skip
        packs.append((pack, reference))
        bundles.append(out)
    return bundles, packs
