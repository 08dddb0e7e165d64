"""Detection: the profile, the literal prefilter, shape and checksum validation. Imports no mitmproxy."""

from .detector import Detector
from .findings import Finding, fingerprint, mask
from .profile import Entry, Profile, ProfileError, builtin_profile_path, load_profiles

__all__ = [
    "Detector",
    "Entry",
    "Finding",
    "Profile",
    "ProfileError",
    "builtin_profile_path",
    "fingerprint",
    "load_profiles",
    "mask",
]
