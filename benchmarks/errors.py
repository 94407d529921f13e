"""The harness's error, in edgepack's one hierarchy (edgepack.runtime.errors)."""

from edgepack.runtime.errors import EdgepackError


class BenchmarkError(EdgepackError):
    """A benchmark could not be run as asked."""
