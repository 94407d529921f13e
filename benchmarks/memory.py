"""Peak resident memory of this process, as the kernel counts it."""

from __future__ import annotations

import sys


def peak_rss_bytes() -> int:
    """VmHWM on Linux: unlike getrusage's ru_maxrss, which Linux carries across exec (a child
    of a large process reports at least the parent's size), it counts only this process."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024
