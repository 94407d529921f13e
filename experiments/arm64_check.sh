#!/usr/bin/env bash
# The arm64 proof: install a real bundle offline in an emulated Debian bookworm arm64 userland
# (the userland of Raspberry Pi OS 64-bit) and check that a pack gives the host's outputs there,
# on ONNX Runtime and LiteRT, under QEMU's default CPU and under cortex-a72 (the Pi 4's ISA).
#
#   sudo bash experiments/arm64_check.sh [--prepare] [--python PY]
#
# --prepare only builds (or reuses) the cached rootfs. PY (default .venv/bin/python) must have
# edgepack with the compress, convert, tflite and deploy extras. Needs root, debootstrap,
# qemu-user-static and binfmt_misc; exits 77 with "arm64 check: skipped: WHY" when it cannot run.
# Emulated inference is ~100x slower than the host: its timings say nothing about a real board.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=$REPO/.venv/bin/python
PREPARE_ONLY=0
while (($#)); do
    case $1 in
    --prepare) PREPARE_ONLY=1 ;;
    --python) PY=$2; shift ;;
    *) echo "arm64 check: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
CACHE=${EDGEPACK_ARM64_CACHE:-/var/cache/edgepack/arm64}
ROOTFS=$CACHE/bookworm-rootfs
START=$(date +%s)
say() { printf 'arm64 check [%4ss]: %s\n' "$(($(date +%s) - START))" "$*"; }
skip() { echo "arm64 check: skipped: $*"; exit 77; }

# --- can it run here? -------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || skip "needs root (debootstrap, chroot, mounts); CI runs as root"
[ "$(uname -m)" = x86_64 ] || skip "the host is $(uname -m); this check emulates arm64 on x86_64"
for tool in debootstrap qemu-aarch64-static unshare chroot; do
    command -v "$tool" >/dev/null || skip "$tool is missing (apt-get install debootstrap qemu-user-static)"
done
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null \
        || skip "binfmt_misc cannot be mounted here (a container without it cannot run arm64 binaries)"
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    # Debian's rule, with the F flag: the kernel opens the interpreter now, so it works in chroots.
    conf=/usr/lib/binfmt.d/qemu-aarch64.conf
    [ -r "$conf" ] || skip "$conf is missing (apt-get install qemu-user-static)"
    cat "$conf" >/proc/sys/fs/binfmt_misc/register 2>/dev/null \
        || skip "cannot register qemu-aarch64 with binfmt_misc"
fi

# --- the rootfs, cached between runs on this machine ----------------------------------------
mirror() {
    # The host's own Debian mirror (as apt is set up here), else debootstrap's default.
    sed -n 's/^URIs: *\([^ ]*\/debian\)\/*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1
}
if [ ! -e "$ROOTFS/.complete" ]; then
    say "building the bookworm arm64 rootfs in $ROOTFS (cold: several minutes)"
    rm -rf "$ROOTFS.partial"
    mkdir -p "$CACHE"
    nice -n 10 debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv \
        bookworm "$ROOTFS.partial" $(mirror) >"$CACHE/debootstrap.log" 2>&1 \
        || { tail -20 "$CACHE/debootstrap.log"; echo "arm64 check: debootstrap failed (log: $CACHE/debootstrap.log)"; exit 1; }
    rm -rf "$ROOTFS.partial/var/cache/apt/archives/"*.deb
    touch "$ROOTFS.partial/.complete"
    mv "$ROOTFS.partial" "$ROOTFS"
    say "rootfs built ($(du -sh "$ROOTFS" | cut -f1))"
else
    say "reusing the cached rootfs $ROOTFS ($(du -sh "$ROOTFS" | cut -f1))"
fi
((PREPARE_ONLY)) && exit 0

# --- a small pack on both backends, and the host's outputs ----------------------------------
WORK=$(mktemp -d /tmp/edgepack-arm64.XXXXXX)
CHROOT_WORK=$ROOTFS/opt/edgepack-check
cleanup() { rm -rf "$WORK" "$CHROOT_WORK"; }
trap cleanup EXIT
"$PY" - "$WORK" <<'EOF'
import subprocess, sys
from pathlib import Path

import numpy as np
import torch
import litert_torch

work = Path(sys.argv[1])
torch.manual_seed(0)
net = torch.nn.Sequential(
    torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
    torch.nn.Linear(8 * 8 * 8, 10),
).eval()
example = torch.rand(1, 1, 8, 8)
torch.onnx.export(net, (example,), work / "small.onnx", input_names=["pixels"],
                  output_names=["logits"], dynamo=False)
litert_torch.convert(net, (example,)).export(str(work / "small.tflite"))
subprocess.run(
    [sys.executable, "-m", "edgepack.cli.main", "pack", str(work / "small.onnx"),
     str(work / "small.tflite"), "-o", str(work / "small.edgepack"),
     "--rename", "serving_default_args_0=pixels", "--task", "other"],
    check=True,
)
np.save(work / "pixels.npy", np.random.default_rng(0).random((1, 1, 8, 8), dtype=np.float32))
EOF
cat >"$WORK/outputs.py" <<'EOF'
# Run the pack on one backend and save the outputs (used on the host and in the chroot alike).
import sys

import numpy as np

import edgepack.runtime as ep

pack, backend, pixels, out = sys.argv[1:5]
model = ep.load(pack, backend=backend, threads=1)
outputs = model.run({"pixels": np.load(pixels)})
np.save(out, next(iter(outputs.values())))  # one output; its name differs between the formats
print(f"{backend}: {model.describe()['backend']} ran on {pack}")
EOF
for backend in onnx tflite; do
    "$PY" "$WORK/outputs.py" "$WORK/small.edgepack" $backend "$WORK/pixels.npy" "$WORK/host-$backend.npy" >/dev/null
done
say "pack built, host outputs saved"

# --- the bundle for a Raspberry Pi 4 (bookworm: Python 3.11, glibc 2.36, aarch64) ----------
"$PY" -m edgepack.cli.main bundle "$WORK/small.edgepack" --profile rpi4-1.5ghz \
    -c constraints.txt -o "$WORK/bundle"
say "bundle built: $(du -sh "$WORK/bundle/wheels" | cut -f1) of wheels"

# --- install and run in the emulated userland, with no network -----------------------------
# qemu passes the host's x86 /proc/cpuinfo through, and both runtimes crash reading it; a
# cpuinfo that matches QEMU_CPU is bind-mounted over it (one that advertises more than the
# emulated CPU has makes the runtimes pick instructions it lacks: SIGILL).
cpuinfo_max() {  # QEMU's default "max" CPU: ARMv8.x with dot product, fp16, atomics
    for i in 0 1 2 3; do
        printf 'processor\t: %s\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\n' "$i"
    done
}
cpuinfo_pi4() {  # Raspberry Pi 4: Cortex-A72 (part 0xd08), ARMv8.0 without dot product
    for i in 0 1 2 3; do
        printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n' "$i"
    done
    printf 'Hardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n'
}
cpuinfo_max >"$WORK/cpuinfo-max"
cpuinfo_pi4 >"$WORK/cpuinfo-cortex-a72"

in_chroot() {  # QEMU_CPU CPUINFO COMMAND...: run in the rootfs with no network, own mounts
    local cpu=$1 cpuinfo=$2
    shift 2
    QEMU_CPU=$cpu unshare --net --mount --fork sh -c '
        root=$1 cpuinfo=$2; shift 2
        mount -t proc proc "$root/proc" && mount --bind "$cpuinfo" "$root/proc/cpuinfo"
        mount --rbind /dev "$root/dev" && mount -t sysfs -o ro sysfs "$root/sys"
        exec chroot "$root" env -i PATH=/usr/bin:/bin HOME=/root LC_ALL=C.UTF-8 "$@"
    ' sh "$ROOTFS" "$cpuinfo" "$@"
}
rm -rf "$CHROOT_WORK" && mkdir -p "$CHROOT_WORK"
cp -a "$WORK/bundle" "$CHROOT_WORK/bundle"
cp "$WORK/pixels.npy" "$WORK/outputs.py" "$CHROOT_WORK/"
[ "$(in_chroot max "$WORK/cpuinfo-max" uname -m)" = aarch64 ] \
    || { echo "arm64 check: the chroot does not run aarch64 binaries"; exit 1; }
if in_chroot max "$WORK/cpuinfo-max" sh -c 'python3 -c "import urllib.request as u; u.urlopen(\"http://1.1.1.1\", timeout=3)"' 2>/dev/null; then
    echo "arm64 check: the chroot reached the network; the offline install proves nothing"; exit 1
fi
t0=$(date +%s)
in_chroot max "$WORK/cpuinfo-max" sh /opt/edgepack-check/bundle/install.sh
say "offline install.sh in the arm64 userland took $(($(date +%s) - t0)) s"

status=0
for cpu in max cortex-a72; do
    for backend in onnx tflite; do
        in_chroot $cpu "$WORK/cpuinfo-$cpu" /opt/edgepack-check/bundle/venv/bin/python \
            /opt/edgepack-check/outputs.py /opt/edgepack-check/bundle/pack/small.edgepack \
            $backend /opt/edgepack-check/pixels.npy /opt/edgepack-check/arm-$cpu-$backend.npy >/dev/null \
            || { echo "arm64 check: FAILED: $backend under QEMU_CPU=$cpu did not run"; status=1; continue; }
        "$PY" - "$WORK/host-$backend.npy" "$CHROOT_WORK/arm-$cpu-$backend.npy" "$cpu" "$backend" <<'EOF' || status=1
import sys

import numpy as np

host, arm = np.load(sys.argv[1]), np.load(sys.argv[2])
diff = float(np.max(np.abs(host - arm)))
ok = diff <= 1e-5
print(f"arm64 check: {sys.argv[4]:6s} QEMU_CPU={sys.argv[3]:10s} max |arm64 - x86_64| = {diff:.2e} "
      f"({'identical' if diff == 0 else 'within 1e-5' if ok else 'FAILED: over 1e-5'})")
sys.exit(0 if ok else 1)
EOF
    done
done
say "done"
((status == 0)) && echo "arm64 check: passed" || echo "arm64 check: FAILED"
exit $status
