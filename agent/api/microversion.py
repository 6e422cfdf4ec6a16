"""Compute API microversions: which versions this API serves and how a request asks for one.

nova's rules: the version is read from `OpenStack-API-Version: compute X.Y` first, then from
the legacy `X-OpenStack-Nova-API-Version: X.Y`; without either it is the minimum, 2.1;
`latest` is the maximum; a malformed value is 400 and one outside [MIN, MAX] is 406.

MAX is the highest version whose behaviour every resource served here implements: 2.53 (service
and hypervisor ids are uuids, the PUT /os-services/{id} form; 2.11 adds forced_down).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

from agent.api.faults import ApiError

MIN = (2, 1)
MAX = (2, 53)
SERVICE_TYPE = "compute"
NEW_HEADER = "OpenStack-API-Version"
LEGACY_HEADER = "X-OpenStack-Nova-API-Version"
_VERSION = re.compile(r"^([1-9]\d*)\.([1-9]\d*|0)$")


@dataclass(frozen=True, order=True)
class Version:
    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    def at_least(self, major: int, minor: int) -> bool:
        return (self.major, self.minor) >= (major, minor)


MIN_VERSION = Version(*MIN)
MAX_VERSION = Version(*MAX)


def parse(text: str) -> Version:
    """'2.53' -> Version(2, 53); 'latest' -> MAX_VERSION. ApiError 400 when malformed, 406
    when outside [MIN_VERSION, MAX_VERSION]."""
    text = text.strip()
    if text.lower() == "latest":
        return MAX_VERSION
    match = _VERSION.match(text)
    if match is None:
        raise ApiError(400, f"API Version String {text} is of invalid format. Must be of "
                            "format MajorNum.MinorNum.")
    version = Version(int(match.group(1)), int(match.group(2)))
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise ApiError(406, f"Version {version} is not supported by the API. Minimum is "
                            f"{MIN_VERSION} and maximum is {MAX_VERSION}.")
    return version


def requested(headers: Mapping[str, str]) -> Version:
    """The version a request asks for (case-insensitive header names): the compute entry of
    OpenStack-API-Version (a comma-separated list of 'service version'), else the legacy
    header, else MIN_VERSION."""
    lowered = {k.lower(): v for k, v in headers.items()}
    new = lowered.get(NEW_HEADER.lower())
    if new:
        for item in new.split(","):
            parts = item.strip().split(None, 1)
            if len(parts) == 2 and parts[0].lower() == SERVICE_TYPE:
                return parse(parts[1])
    legacy = lowered.get(LEGACY_HEADER.lower())
    if legacy:
        return parse(legacy)
    return MIN_VERSION


def response_headers(version: Version) -> list[tuple[str, str]]:
    """The headers every versioned answer carries."""
    return [(NEW_HEADER, f"{SERVICE_TYPE} {version}"), (LEGACY_HEADER, str(version)),
            ("Vary", f"{NEW_HEADER}, {LEGACY_HEADER}")]
