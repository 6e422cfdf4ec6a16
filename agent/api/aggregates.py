"""os-aggregates: `GET /os-aggregates`. The agent keeps no host aggregates, so the list is
empty; openstackclient's `hypervisor show` reads it to list a host's aggregates."""

from __future__ import annotations

from agent.api.context import Call


def list_aggregates(call: Call) -> tuple[int, dict]:
    return 200, {"aggregates": []}


ROUTES = (("GET", r"/os-aggregates", list_aggregates),)
