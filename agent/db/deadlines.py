"""Time limits on every database call, per backend, from `[database] connect_timeout` and
`[database] statement_timeout` (both in seconds).

A database server that stops answering (its process frozen, its host hung) keeps TCP
connections open: the kernel acknowledges what is sent and nothing comes back, so a statement
without a client-side limit waits for ever. The limits:

- PostgreSQL (psycopg 3): libpq's connect_timeout; the server's own `statement_timeout`
  (a slow statement is cancelled cleanly and the connection stays usable); TCP keepalives and
  `tcp_user_timeout` (a dead peer or a cut network); and, for a server that answers nothing at
  all, a client-side deadline on every wait for the server (statement, fetch, commit, rollback,
  pre-ping), a little longer than statement_timeout, after which the connection is closed and
  the call fails with OperationalError.
- MariaDB/MySQL (PyMySQL): connect_timeout, and read_timeout/write_timeout on the socket.
- SQLite: the busy timeout, the longest wait for another connection's lock.
"""

from __future__ import annotations

from typing import Any

# The client-side deadline on PostgreSQL exceeds statement_timeout by this much, so that a
# server that is alive but slow cancels the statement itself (the connection survives) before
# the client gives up on it (the connection is closed).
CLIENT_GRACE_SECONDS = 2.0


def postgresql_connect_args(connect_timeout: float, statement_timeout: float) -> dict[str, Any]:
    """libpq connection parameters for psycopg."""
    idle = max(1, int(statement_timeout))
    return {
        "connect_timeout": max(1, int(connect_timeout)),
        "options": f"-c statement_timeout={int(statement_timeout * 1000)}",
        "keepalives": 1,
        "keepalives_idle": idle,
        "keepalives_interval": max(1, idle // 3),
        "keepalives_count": 3,
        "tcp_user_timeout": int(statement_timeout * 1000),
    }


def mysql_connect_args(connect_timeout: float, statement_timeout: float) -> dict[str, Any]:
    """PyMySQL connection parameters (its timeouts are whole seconds)."""
    limit = max(1, int(statement_timeout))
    return {"connect_timeout": max(1, int(connect_timeout)), "read_timeout": limit,
            "write_timeout": limit}


def postgresql_connection_class(client_timeout: float):
    """A psycopg Connection class whose every wait for the server is bounded by
    `client_timeout` seconds: past it the connection is closed and `psycopg.OperationalError`
    says so (SQLAlchemy then sees a disconnect and drops the connection from its pool)."""
    import psycopg
    from psycopg import errors

    wait_timeout = getattr(errors, "_WaitTimeout", None)
    if wait_timeout is None:  # psycopg older than 3.3: Connection.wait has no timeout
        raise RuntimeError(f"psycopg {psycopg.__version__} cannot bound a wait; "
                           "compute-agent needs psycopg 3.3 or later")

    class BoundedConnection(psycopg.Connection):
        def wait(self, gen, interval=0.1, timeout=None):
            if timeout is not None and timeout <= client_timeout:
                # psycopg's own bounded wait (notifies, cancel): its timeout is its business.
                return super().wait(gen, interval=interval, timeout=timeout)
            try:
                return super().wait(gen, interval=interval, timeout=client_timeout)
            except wait_timeout:
                self.pgconn.finish()
                raise psycopg.OperationalError(
                    f"no answer from the PostgreSQL server within {client_timeout:g} s "
                    "([database] statement_timeout); connection closed") from None

    return BoundedConnection
