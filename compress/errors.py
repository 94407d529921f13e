"""Errors of the workstation pipeline, in edgepack's one hierarchy (edgepack.runtime.errors)."""

from edgepack.runtime.errors import EdgepackError


class ExportError(EdgepackError):
    """A model could not be exported (the message names the op and the module)."""


class QuantizationError(EdgepackError):
    """Quantization could not produce a model within the requested constraints."""
