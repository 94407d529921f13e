"""The one exception hierarchy of edgepack: each error says what was wrong and what was expected."""


class EdgepackError(Exception):
    """Base of every error edgepack raises on purpose."""


class ManifestError(EdgepackError):
    """manifest.json is missing, unreadable or does not match the pack schema."""


class SchemaVersionError(ManifestError):
    """The manifest's schema version is one this runtime cannot read."""


class IntegrityError(EdgepackError):
    """A file in the pack is missing or its sha256 does not match the manifest."""


class SignatureError(IntegrityError):
    """Trusted keys were given and the pack is unsigned, or signed by none of them."""


class UnsafeArchiveError(EdgepackError):
    """An archive entry would escape the pack (absolute path, '..', link or device)."""


class BackendUnavailableError(EdgepackError):
    """The interpreter a backend needs is not installed or cannot run here."""


class InputError(EdgepackError):
    """Inputs given to a model do not match what the model expects."""


class PreprocessingError(EdgepackError):
    """Text or image preprocessing could not turn the input into model tensors."""


class CpuFeatureWarning(UserWarning):
    """This CPU lacks a feature the pack's manifest lists in requirements.cpu_features."""


class PixelRangeWarning(UserWarning):
    """An image's pixel values fill only a small part of the range the pack takes."""
