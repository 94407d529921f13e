"""Deploys against real OpenSSH servers on 127.0.0.1 (see conftest): install, re-deploy no-op,
a failing install that leaves the previous release current, rollback, host keys, two hosts in
parallel, and bench --remote."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgepack.cli.main import main
from edgepack.deploy.bundle import read_bundle
from edgepack.deploy.fleet import format_table, read_inventory, run_fleet
from edgepack.deploy.release import current_release, deploy_one, rollback_one
from edgepack.deploy.ssh import SshTarget
from edgepack.deploy.sums import write_sums

RUN_PACK = r"""
import json, sys
import numpy as np
import edgepack.runtime as ep
model = ep.load(sys.argv[1], threads=1)
x = np.asarray(json.loads(sys.argv[2]), dtype=np.float32)
print(json.dumps(model.run({"x": x})["logits"].tolist()))
"""


def _remote_outputs(lab, index, path, pack_file, x):
    """The installed release's own Python runs the pack on the device."""
    script = lab.root / "run_pack.py"
    script.write_text(RUN_PACK)
    command = (
        f"{path}/current/venv/bin/python {script} {path}/current/pack/{pack_file} "
        f"'{json.dumps(x.tolist())}'"
    )
    return np.asarray(json.loads(lab.remote(index, command)), dtype=np.float32)


def _altered(bundle, dest, edit):
    """A copy of a bundle changed by edit(folder), with its sums rewritten to match."""
    shutil.copytree(bundle, dest)
    edit(dest)
    write_sums(dest)
    return dest


@pytest.fixture(scope="module")
def device_path(ssh_lab):
    return str(ssh_lab.root / "device-a")


def test_deploy_installs_the_bundle_and_makes_it_current(ssh_lab, host_bundles, device_path):
    (bundle, _), ((pack, reference), _) = host_bundles[0], host_bundles[1]
    info = read_bundle(bundle)
    target = ssh_lab.target(0, device_path)
    result = deploy_one(bundle, info, target, ssh_lab.options())
    assert result.error is None and result.ok and result.changed, result
    assert result.step == "switch" and result.release == info["id"]
    assert ssh_lab.remote(0, f"readlink {device_path}/current").strip() == f"releases/{info['id']}"
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    outputs = _remote_outputs(ssh_lab, 0, device_path, pack.name, x)
    np.testing.assert_allclose(outputs, reference(x), rtol=1e-5, atol=1e-5)
    # The device's pip saw no index: the wheels came from the bundle only.
    log = ssh_lab.remote(0, f"cat {device_path}/current/logs/pip.log")
    assert "Looking in links: wheels" in log or "Processing ./wheels" in log
    assert "http" not in log


def test_redeploying_the_same_bundle_is_a_no_op(ssh_lab, host_bundles, device_path):
    bundle = host_bundles[0][0]
    info = read_bundle(bundle)
    target = ssh_lab.target(0, device_path)
    stamp = f"stat -c %Y.%i {device_path}/releases/{info['id']}/.installed"
    before = ssh_lab.remote(0, stamp)
    result = deploy_one(bundle, info, target, ssh_lab.options())
    assert result.ok and not result.changed and result.error is None
    assert ssh_lab.remote(0, stamp) == before  # nothing was copied or reinstalled
    assert "already current" in format_table([result])


def test_failed_install_leaves_the_previous_release_current(ssh_lab, host_bundles, device_path):
    good = read_bundle(host_bundles[0][0])
    target = ssh_lab.target(0, device_path)
    assert deploy_one(host_bundles[0][0], good, target, ssh_lab.options()).ok
    # A consistent bundle (sums match) whose install fails on the device: pip finds no wheel.
    broken = _altered(
        host_bundles[0][1],
        ssh_lab.root / "broken-bundle",
        lambda b: (b / "requirements.txt").write_text("numpy==0.0.1\n"),
    )
    info = read_bundle(broken)
    result = deploy_one(broken, info, target, ssh_lab.options())
    assert not result.ok and result.step == "install", result
    assert "pip could not install the wheels offline" in result.error
    assert current_release(target, ssh_lab.options()) == good["id"]
    assert ssh_lab.remote(0, f"ls {device_path}/releases").split() == [good["id"]]


def test_rollback_switches_back_to_the_previous_release(ssh_lab, host_bundles, device_path):
    first, second = (read_bundle(b) for b in host_bundles[0])
    target, options = ssh_lab.target(0, device_path), ssh_lab.options()
    assert deploy_one(host_bundles[0][0], first, target, options).ok
    assert deploy_one(host_bundles[0][1], second, target, options).ok
    assert current_release(target, options) == second["id"]
    back = rollback_one(target, options)
    assert back.ok and back.release == first["id"]
    assert current_release(target, options) == first["id"]
    assert (
        ssh_lab.remote(0, f"readlink {device_path}/previous").strip() == f"releases/{second['id']}"
    )
    # The rolled-back release still runs its own pack.
    x = np.ones((1, 4), np.float32)
    (pack, reference), _ = host_bundles[1]
    np.testing.assert_allclose(
        _remote_outputs(ssh_lab, 0, device_path, pack.name, x), reference(x), rtol=1e-5, atol=1e-5
    )


def test_rollback_without_a_previous_release_names_the_problem(ssh_lab):
    result = rollback_one(
        ssh_lab.target(1, str(ssh_lab.root / "never-deployed")), ssh_lab.options()
    )
    assert not result.ok and result.step == "rollback"
    assert "no edgepack releases" in result.error or "no previous release" in result.error


def test_changed_host_key_is_refused(ssh_lab, host_bundles, tmp_path):
    server = ssh_lab.servers[1]
    other = tmp_path / "other_key"
    import subprocess

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    kind, key = other.with_suffix(".pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{server.port} {kind} {key}\n")
    options = ssh_lab.options(extra=(f"UserKnownHostsFile={known}",))
    bundle = host_bundles[0][0]
    for accept in (False, True):  # trusting new keys never covers a changed one
        options = ssh_lab.options(
            accept_new_host_key=accept, extra=(f"UserKnownHostsFile={known}",)
        )
        result = deploy_one(bundle, read_bundle(bundle), ssh_lab.target(1, "/tmp/x"), options)
        assert not result.ok and result.step == "connect"
        assert "host key" in result.error and "CHANGED" in result.error, result.error


def test_unknown_host_key_needs_accept_new_host_key(ssh_lab, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text("")
    target = SshTarget.parse(ssh_lab.url(1, str(tmp_path / "device")))
    refused = rollback_one(target, ssh_lab.options(extra=(f"UserKnownHostsFile={known}",)))
    assert refused.step == "connect" and "--accept-new-host-key" in refused.error
    trusted = rollback_one(
        target, ssh_lab.options(accept_new_host_key=True, extra=(f"UserKnownHostsFile={known}",))
    )
    assert trusted.step == "rollback"  # connected; there is just nothing to roll back to
    assert str(ssh_lab.servers[1].port) in known.read_text()


def test_unreachable_host_and_wrong_architecture_name_the_step(ssh_lab, host_bundles, tmp_path):
    from tests.deploy.conftest import _free_port

    bundle = host_bundles[0][0]
    nobody = SshTarget.parse(f"ssh://127.0.0.1:{_free_port()}/tmp/x")
    result = deploy_one(bundle, read_bundle(bundle), nobody, ssh_lab.options())
    assert result.step == "connect" and "cannot reach" in result.error

    def to_arm(folder):
        data = json.loads((folder / "bundle.json").read_text())
        data["target"]["machine"] = "aarch64"
        (folder / "bundle.json").write_text(json.dumps(data))

    arm = _altered(bundle, tmp_path / "arm-bundle", to_arm)
    result = deploy_one(
        arm, read_bundle(arm), ssh_lab.target(0, str(tmp_path / "d")), ssh_lab.options()
    )
    assert result.step == "check" and "wrong architecture" in result.error
    assert "aarch64" in result.error


def test_two_hosts_deploy_in_parallel(ssh_lab, host_bundles, tmp_path):
    bundle = host_bundles[0][0]
    info = read_bundle(bundle)
    inventory = tmp_path / "hosts.toml"
    # Both "devices" are this machine, so each gets its own folder.
    inventory.write_text(
        "jobs = 2\n"
        + "".join(
            f'[[hosts]]\nto = "{ssh_lab.url(i, str(tmp_path / f"fleet{i}"))}"\n' for i in range(2)
        )
    )
    targets, jobs = read_inventory(inventory)
    spans = {}
    lock = threading.Lock()

    def work(target):
        start = time.monotonic()
        result = deploy_one(bundle, info, target, ssh_lab.options())
        with lock:
            spans[target.display] = (start, time.monotonic())
        return result

    results = run_fleet(targets, work, jobs=jobs)
    assert [r.ok for r in results] == [True, True], [r.error for r in results]
    (a0, a1), (b0, b1) = spans.values()
    assert a0 < b1 and b0 < a1  # the two deploys overlapped in time
    table = format_table(results)
    assert all(r.host in table for r in results) and table.count(info["id"]) == 2


def test_cli_deploy_and_bench_remote(ssh_lab, host_bundles, tmp_path, capsys):
    bundle = host_bundles[0][0]
    pack = host_bundles[1][0][0]
    url = ssh_lab.url(0, str(tmp_path / "cli-device"))
    ssh = ["--ssh-config", str(ssh_lab.config)]
    assert main(["deploy", str(bundle) + ".tar", "--to", url, *ssh]) == 0
    out = capsys.readouterr().out
    assert "host" in out.splitlines()[0] and "current" in out
    code = main(["bench", str(pack), "--remote", url, *ssh, "--min-count", "20",
                 "--min-duration", "0.2", "--cold-starts", "0", "--json"])  # fmt: skip
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    (result,) = data["results"]
    assert result["label"].startswith("measured on ") and url.split("/")[2] in result["label"]
    assert result["latency"]["count"] >= 20 and result["pack"] == str(pack)
    # The device's p50 went into the estimator's error record for the bundle's profile.
    record = result["estimate"]
    assert record["kind"] == "measured" and record["profile"] == "host", record
    assert record["latency_ms"] == pytest.approx(result["latency"]["percentiles_s"]["p50"] * 1e3)
    history = json.loads(Path(record["history_file"]).read_text())["records"]
    assert any(r["measured_ms"] == record["latency_ms"] for r in history)
    # The JSON also stays on the device, beside the release.
    assert ssh_lab.remote(0, f"ls {tmp_path / 'cli-device'}/current/").count("bench-") == 1
    other = host_bundles[1][1][0]
    assert main(["bench", str(other), "--remote", url, *ssh]) == 1
    assert "bundle and deploy this pack first" in capsys.readouterr().err


def test_scp_upload_when_rsync_is_missing(ssh_lab, host_bundles, tmp_path):
    from edgepack.deploy.ssh import upload

    bundle = host_bundles[0][0]
    remote = tmp_path / "scp-device"
    ssh_lab.remote(0, f"mkdir -p {remote}")
    upload(ssh_lab.target(0, str(remote)), ssh_lab.options(), bundle, str(remote), rsync=False)
    assert "OK" in ssh_lab.remote(0, f"cd {remote} && sha256sum --check SHA256SUMS | tail -1")
    assert sorted(p.name for p in remote.iterdir()) == sorted(p.name for p in bundle.iterdir())


@pytest.mark.parametrize(
    ("facts", "step", "expect"),
    [
        (
            {"python": "3.10"},
            "check",
            "wrong Python: the bundle is for Python 3.11, the device has 3.10",
        ),
        ({"venv": "no"}, "check", "python3-venv is missing on the device: sudo apt install"),
        ({"free_kb": "1000"}, "disk", "full disk: the release needs about"),
        ({"machine": "armv7l"}, "check", "the bundle is for aarch64, the device is armv7l"),
    ],
)
def test_device_checks_before_copying(facts, step, expect):
    from edgepack.deploy.errors import DeployError
    from edgepack.deploy.release import check_device

    bundle = {
        "target": {"machine": "aarch64", "python": "3.11"},
        "wheel_bytes": 50_000_000,
        "install_bytes_estimate": 150_000_000,
    }
    device = {"machine": "aarch64", "python": "3.11", "venv": "yes", "free_kb": "9000000"}
    with pytest.raises(DeployError) as caught:
        check_device(
            SshTarget.parse("ssh://pi@garage-pi/home/pi/edgepack"), {**device, **facts}, bundle
        )
    assert caught.value.step == step and expect in caught.value.message
    assert str(caught.value).startswith(f"pi@garage-pi: {step}: ")
    check_device(SshTarget.parse("ssh://pi@garage-pi"), device, bundle)  # all fine: no error
