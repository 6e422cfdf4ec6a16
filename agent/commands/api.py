"""`agent api`: serve nova's compute REST API (/v2.1) over the agent's database."""

from __future__ import annotations

import argparse


def register(subparsers, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "api", parents=[common], help="serve nova's compute REST API (/v2.1)",
        description="Serve nova's compute REST API (os-services, os-hypervisors, flavors, "
                    "servers and their actions, cast through transport_url, or the SQLite "
                    "broker file beside a SQLite database, as agent server) over the agent's "
                    "database, for openstackclient, novaclient and openstacksdk. With "
                    "auth_strategy = noauth (the default) only a loopback address is served.")
    parser.add_argument("--bind", metavar="ADDR:PORT",
                        help="listen address (config: [api] bind, default 127.0.0.1:8774)")
    parser.set_defaults(func=run)


def run(args, conf) -> int:
    from agent.api import server
    from agent.db import migrate
    from agent.db.engine import database_from_conf
    from agent.errors import DatabaseError
    from agent.log import setup_logging

    where = "--bind" if args.bind else conf.where("api", "bind")  # file and line when set
    host, port = server.parse_bind(args.bind or conf.api.bind, where)
    server.check_access(host, port, conf.api.auth_strategy, where)
    setup_logging(conf.debug, conf.log_file, conf.secrets(),
                  conf.where("DEFAULT", "log_file"))
    db = database_from_conf(conf, create=False)
    caster = None
    try:
        revision = migrate.current_revision(db)
        if revision != migrate.HEAD:
            raise DatabaseError(migrate.outdated_schema_message(db.url, revision))
        caster = server.rpc_client(conf)
        server.serve(server.build_app(conf, db, caster), host, port, conf.api.workers)
    finally:
        if caster is not None:
            caster.close()
        db.dispose()
    return 0
