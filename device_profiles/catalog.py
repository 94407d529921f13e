"""Finding device profiles by name: the bundled files, a user directory and the detected host."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from edgepack.device_profiles.errors import ProfileError

from .host import detect_host
from .profile import DeviceProfile, read_profile_file

PROFILES_DIR_ENV = "EDGEPACK_PROFILES_DIR"
HOST = "host"
BUNDLED_DIR = Path(__file__).resolve().parent


def _user_dir(profiles_dir: str | os.PathLike[str] | None) -> Path | None:
    if profiles_dir is None:
        env = os.environ.get(PROFILES_DIR_ENV)
        if not env:
            return None
        profiles_dir, origin = env, f"${PROFILES_DIR_ENV}"
    else:
        origin = "profiles_dir"
    folder = Path(profiles_dir)
    if not folder.is_dir():
        raise ProfileError(f"{origin} is {str(folder)!r}, which is not a directory")
    return folder


def _profile_files(profiles_dir: str | os.PathLike[str] | None) -> dict[str, Path]:
    """name -> file. A user profile shadows a bundled one of the same name, so a user can
    recalibrate a board; 'host' is always the detected machine."""
    files = {p.stem: p for p in BUNDLED_DIR.glob("*.toml")}
    user = _user_dir(profiles_dir)
    if user is not None:
        files.update({p.stem: p for p in user.glob("*.toml")})
    files.pop(HOST, None)
    return files


def list_profiles(profiles_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """Bundled profile names, the user's (profiles_dir or $EDGEPACK_PROFILES_DIR) and 'host'."""
    return sorted({*_profile_files(profiles_dir), HOST})


def load_profile(
    name_or_path: str | os.PathLike[str], profiles_dir: str | os.PathLike[str] | None = None
) -> DeviceProfile:
    """Load a profile by name ('rpi5', 'host', a user profile) or from a path to a .toml file.

    >>> load_profile("rpi5").cpu.cores
    4
    """
    text = os.fspath(name_or_path)
    if text.endswith(".toml") or os.sep in text:
        return read_profile_file(text)
    if text == HOST:
        return detect_host()
    files = _profile_files(profiles_dir)
    if text not in files:
        known = list_profiles(profiles_dir)
        # "rpi4" names a board that has one profile per clock: offer those first.
        close = [n for n in known if n.startswith(text)] or difflib.get_close_matches(text, known)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise ProfileError(
            f"unknown device profile {text!r}; {hint}known profiles: "
            f"{', '.join(list_profiles(profiles_dir))} (add your own as <name>.toml in "
            f"${PROFILES_DIR_ENV}, or pass the path of a .toml file)"
        )
    return read_profile_file(files[text])
