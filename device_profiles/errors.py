"""The profiles' error, in edgepack's one hierarchy (edgepack.runtime.errors)."""

from edgepack.runtime.errors import EdgepackError


class ProfileError(EdgepackError):
    """A device profile is missing, unknown or malformed."""
