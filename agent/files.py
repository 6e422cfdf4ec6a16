"""The files and directories the agent creates, with their modes set explicitly.

Whatever the umask (systemd's UMask=, a shell's 000), the agent creates:

==========================  ======  ==========================================================
what                        mode    examples
==========================  ======  ==========================================================
directories                 0750    state_path, its fleet/<host> directories, the SQLite
                                    database's directory
files                       0640    compute_id, the SQLite database (its -wal and -shm files
                                    take the database file's mode), log_file, fleet reports
==========================  ======  ==========================================================

Owner and group may read (an operators' group can read logs and state), nobody else; only the
owner writes. A stricter umask makes them stricter still, never looser. Existing files and
directories keep their modes, but a state directory any user may write to stops start-up (a
node identity planted there would decide what start-up destroys).

Files replaced as a whole (compute_id, reports) are written to a new temporary file with a
random name in the same directory, created exclusively (O_EXCL | O_NOFOLLOW: a file or symbolic
link planted there makes the write fail, it is never followed), synced and renamed over the old
one: a reader sees the old or the new content, never a part, and a failure leaves the old file.
"""

from __future__ import annotations

import os
import secrets as random_names
from typing import Mapping

from agent.errors import ConfigError

DIR_MODE = 0o750
FILE_MODE = 0o640
_CREATE = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
SYSTEM_STATE_PATH = "/var/lib/compute-agent"


def default_state_path(environ: Mapping[str, str], euid: int) -> str:
    """The state directory when `state_path` is not set, first match wins:

    1. ``$STATE_DIRECTORY``: systemd's StateDirectory= (the shipped unit's
       /var/lib/compute-agent; the first one when it lists several, colon-separated);
    2. /var/lib/compute-agent for root (the same directory, for commands an operator runs);
    3. ``$XDG_STATE_HOME/compute-agent`` (an absolute path only, as the XDG base directory
       specification says);
    4. ``$HOME/.local/state/compute-agent``, when HOME is set and not '/'.

    None of them (a service without StateDirectory=, HOME unset) is a ConfigError saying what
    to set: the user database's home directory is not guessed, it would be '/' for a dynamic
    user."""
    state_directory = environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state_directory:
        return state_directory
    if euid == 0:
        return SYSTEM_STATE_PATH
    xdg = environ.get("XDG_STATE_HOME", "")
    if os.path.isabs(xdg):
        return os.path.join(xdg, "compute-agent")
    home = environ.get("HOME", "")
    if home and home != "/":
        return os.path.join(home, ".local", "state", "compute-agent")
    raise ConfigError("[DEFAULT] state_path is not set and has no default here: neither "
                      "$STATE_DIRECTORY (systemd's StateDirectory=), $XDG_STATE_HOME nor $HOME "
                      "is set; set state_path in the configuration or pass --state-path")


def ensure_directory(path: str, mode: int = DIR_MODE) -> None:
    """Create `path` and any missing parents with `mode` (os.makedirs gives intermediate
    directories the umask's mode instead). An existing directory is left as it is. Raises
    OSError."""
    path = os.path.abspath(path)
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)  # the umask can only remove bits from `mode`
        except FileExistsError:
            if not os.path.isdir(directory):
                raise


def is_writable_by_others(path: str) -> bool:
    """`path` exists and every user may create or replace files in it (the 'other' write bit,
    sticky or not). Follows a symbolic link, as the agent's own use of the path does."""
    try:
        return bool(os.stat(path).st_mode & 0o002)
    except FileNotFoundError:
        return False


def write_atomically(path: str, data: str, mode: int = FILE_MODE) -> None:
    """Replace `path` with `data` (UTF-8): a new file `.<name>.<random>.tmp` in the same
    directory, created exclusively with `mode`, synced, renamed over `path`, the directory
    synced. On any failure the temporary file is removed and `path` is unchanged. Raises
    OSError."""
    directory, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{name}.{random_names.token_hex(8)}.tmp")
    fd = os.open(tmp, _CREATE | os.O_WRONLY, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _sync_directory(directory)


def create_private_file(path: str, mode: int = FILE_MODE) -> bool:
    """Create `path` empty with `mode` unless it exists (True when created), without following
    a symbolic link at `path`. For files that other code opens afterwards (the SQLite database,
    the log), so that they get `mode` instead of the opener's 0644 or 0666. Raises OSError."""
    try:
        fd = os.open(path, _CREATE | os.O_WRONLY, mode)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def open_append(path: str, mode: int = FILE_MODE) -> int:
    """A file descriptor appending to `path`, created with `mode` if missing. A symbolic link
    at `path` is refused (OSError ELOOP), not followed."""
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                   mode)


def _sync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
