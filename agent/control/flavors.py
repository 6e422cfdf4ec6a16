"""Operator requests on flavors (nova's os-flavors / flavor-manage): list, show by flavorid or
name, create with nova's rules, delete. Each takes the caller's session and returns
agent.db.flavor_queries.FlavorRecord; a refusal raises an agent.control.errors type before
anything is written.

Rules (nova's compute/flavors.py create): name 1-255 characters, no leading or trailing
blanks, no control characters; flavorid (default: a new uuid) 1-255 of letters, digits, '_',
'.', '-' and blanks, no leading or trailing blank; vcpus and memory_mb (MiB) from 1, root_gb,
ephemeral_gb (GiB) and swap (MiB) from 0, each at most 2**31-1; name and flavorid unique.
"""

from __future__ import annotations

import re
import uuid

from sqlalchemy.orm import Session

from agent import values
from agent.control.errors import FlavorExists, FlavorNotFound, InvalidValue
from agent.db import flavor_queries as q
from agent.db.flavor_queries import FlavorRecord

_FLAVORID_RE = re.compile(r"[\w.\- ]+\Z")
# (field, minimum): nova's bounds; the maximum is what an Integer column holds.
SIZE_FIELDS = (("vcpus", 1), ("memory_mb", 1), ("root_gb", 0), ("ephemeral_gb", 0), ("swap", 0))


def list_flavors(session: Session) -> list[FlavorRecord]:
    return q.list_flavors(session)


def find_flavor(session: Session, key: str) -> FlavorRecord:
    """The flavor whose flavorid is `key`, else the one whose name is `key` (the order of
    nova's client); FlavorNotFound."""
    found = q.find_flavors(session, key)
    for record in found:
        if record.flavorid == key:
            return record
    if found:
        return found[0]
    raise FlavorNotFound(key)


def check_flavor(name: object, flavorid: object, sizes: dict[str, object]) -> None:
    """InvalidValue naming the first field that breaks nova's rules (pure)."""
    if (not isinstance(name, str) or name != name.strip()
            or not _fits(values.text, name)):
        raise InvalidValue("name", name, "1 to 255 characters without control characters "
                                         "or leading or trailing blanks")
    if (not isinstance(flavorid, str) or flavorid != flavorid.strip()
            or len(flavorid) > values.STRING_MAX or not _FLAVORID_RE.match(flavorid)):
        raise InvalidValue("flavorid", flavorid, "1 to 255 letters, digits, '_', '.', '-' or "
                                                 "inner blanks")
    for field, minimum in SIZE_FIELDS:
        value = sizes.get(field, 0)
        if not _fits(values.integer, value, minimum):
            raise InvalidValue(field, value, f"an integer from {minimum} to {values.INT_MAX}")


def _fits(rule, *args) -> bool:
    try:
        rule(*args)
    except values.BadValue:
        return False
    return True


def create_flavor(session: Session, name: str, *, vcpus: int, memory_mb: int,
                  root_gb: int = 0, ephemeral_gb: int = 0, swap: int = 0,
                  flavorid: str | None = None, is_public: bool = True,
                  description: str | None = None) -> FlavorRecord:
    """Create a flavor (sizes: memory_mb and swap in MiB, disks in GiB); InvalidValue for a
    value nova refuses, FlavorExists for a name or flavorid in use."""
    flavorid = str(uuid.uuid4()) if flavorid is None else flavorid
    sizes = {"vcpus": vcpus, "memory_mb": memory_mb, "root_gb": root_gb,
             "ephemeral_gb": ephemeral_gb, "swap": swap}
    check_flavor(name, flavorid, sizes)
    name_taken, id_taken = q.taken(session, name, flavorid)
    if name_taken:
        raise FlavorExists("name", name)
    if id_taken:
        raise FlavorExists("flavorid", flavorid)
    return q.insert_flavor(session, name=name, flavorid=flavorid, rxtx_factor=1.0,
                           disabled=False, is_public=is_public, description=description,
                           **sizes)


def delete_flavor(session: Session, key: str) -> FlavorRecord:
    """Delete the flavor named by flavorid or name (instances keep their copy); returns it."""
    record = find_flavor(session, key)
    q.delete_flavor(session, record.id)
    return record
