"""Where a driver measures the disk of instances: the filesystem that holds `instances_path`,
or will hold it once the first instance is spawned. Measuring creates nothing (a dry run, or a
host with no instance yet, leaves the state directory as it is)."""

from __future__ import annotations

import os


def nearest_existing_dir(path: str) -> str:
    """`path` (made absolute) if it is a directory, else its nearest existing ancestor: the
    directory whose filesystem will hold it."""
    path = os.path.abspath(path)
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path
