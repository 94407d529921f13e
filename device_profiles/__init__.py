"""Device profiles: what each target board is and how edgepack runs on it, one cited TOML file each.

>>> from edgepack.device_profiles import load_profile, clamp_threads
>>> rpi5 = load_profile("rpi5")
>>> rpi5.defaults.backend, clamp_threads(rpi5, 2)
('onnxruntime', 2)
"""

from .catalog import BUNDLED_DIR, HOST, PROFILES_DIR_ENV, list_profiles, load_profile
from .host import detect_host
from .profile import (
    FIGURE_FIELDS,
    SCHEMA_VERSION,
    Accelerator,
    Cpu,
    Defaults,
    DeviceProfile,
    Memory,
    OsImage,
    Power,
    ProfileError,
    QuantizationScheme,
    ReferenceMeasurement,
    Source,
    as_measured,
    clamp_threads,
    is_arm,
    missing_sources,
    quantization_scheme,
    read_profile_file,
)

__all__ = [
    "BUNDLED_DIR",
    "FIGURE_FIELDS",
    "HOST",
    "PROFILES_DIR_ENV",
    "SCHEMA_VERSION",
    "Accelerator",
    "Cpu",
    "Defaults",
    "DeviceProfile",
    "Memory",
    "OsImage",
    "Power",
    "ProfileError",
    "QuantizationScheme",
    "ReferenceMeasurement",
    "Source",
    "as_measured",
    "clamp_threads",
    "detect_host",
    "is_arm",
    "list_profiles",
    "load_profile",
    "missing_sources",
    "quantization_scheme",
    "read_profile_file",
]
