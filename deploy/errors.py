"""Errors of bundling and deploying; each names the step that failed (and the host)."""

from __future__ import annotations

from edgepack.runtime.errors import EdgepackError


class BundleError(EdgepackError):
    """A bundle could not be built or does not check out (sums, layout, missing wheels)."""


class DeployError(EdgepackError):
    """A deploy step failed on a host; str() is 'HOST: STEP: what happened and what to do'."""

    def __init__(self, host: str, step: str, message: str) -> None:
        super().__init__(f"{host}: {step}: {message}")
        self.host = host
        self.step = step
        self.message = message
