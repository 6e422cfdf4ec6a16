"""agent.api.paging's rules, table-tested: what a list request's limit and marker become (nova's
get_limit_and_marker and query schema, the messages measured on nova 34's validator), and when
a page carries a next link and what it points at."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from agent.api import paging
from agent.api.context import Call
from agent.api.faults import ApiError
from agent.api.microversion import Version


def call(query: str = "", *, max_limit: int = 1000,
         api_root: str = "http://api.example:8774/v2.1") -> Call:
    lists: dict[str, list[str]] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        lists.setdefault(key, []).append(value)
    return Call(version=Version(2, 53), session=None, body=None,
                query={k: v[0] for k, v in lists.items()}, service_down_time=60,
                server_clock=False, request_id="req-x", base_url="http://api.example:8774",
                query_lists=lists, api_root=api_root, max_limit=max_limit)


@pytest.mark.parametrize("query, max_limit, size, marker", [
    ("", 1000, 1000, None),
    ("limit=5", 1000, 5, None),
    ("limit=0", 1000, 0, None),
    ("limit=2000", 1000, 1000, None),
    ("limit=99999999999999999999", 2, 2, None),
    ("limit=007", 1000, 7, None),
    ("limit=1&limit=3", 1000, 3, None),
    ("marker=abc", 2, 2, "abc"),
    ("marker=a&marker=b&limit=1", 1000, 1, "b"),
    ("marker=", 1000, 1000, ""),
], ids=["default", "smaller", "zero", "above-max", "huge", "leading-zeros", "last-limit",
        "marker", "last-marker", "empty-marker"])
def test_requested_page(query, max_limit, size, marker):
    assert paging.requested_page(call(query, max_limit=max_limit)) == paging.Page(size, marker)


@pytest.mark.parametrize("query, message", [
    ("limit=-1", ("Invalid input for query parameters limit. Value: -1. '-1' does not match "
                  "'^[0-9]*$'")),
    ("limit=abc", ("Invalid input for query parameters limit. Value: abc. 'abc' does not "
                   "match '^[0-9]*$'")),
    ("limit=1.5", ("Invalid input for query parameters limit. Value: 1.5. '1.5' does not "
                   "match '^[0-9]*$'")),
    ("limit=%2B3", ("Invalid input for query parameters limit. Value: +3. '+3' does not "
                    "match '^[0-9]*$'")),
    ("limit=", "Invalid input for query parameters limit. Value: . '' should be non-empty"),
    ("limit=-1&limit=2", ("Invalid input for query parameters limit. Value: -1. '-1' does "
                          "not match '^[0-9]*$'")),
    ("marker=a%00b", "marker [a\x00b] not found"),
], ids=["negative", "word", "fraction", "plus", "empty", "any-value-bad", "control-char"])
def test_bad_limit_or_marker_is_400_with_novas_message(query, message):
    with pytest.raises(ApiError) as raised:
        paging.requested_page(call(query))
    assert (raised.value.code, raised.value.message) == (400, message)


@pytest.mark.parametrize("query, key", [("limit=1&limit=2", "limit"),
                                        ("marker=a&marker=b", "marker")])
def test_single_valued_refuses_a_repeated_key(query, key):
    """os-hypervisors from 2.53: nova's schema takes one value of each."""
    assert paging.requested_page(call(query))  # elsewhere the last value wins
    with pytest.raises(ApiError) as raised:
        paging.requested_page(call(query), single=True)
    assert raised.value.code == 400
    assert raised.value.message.startswith(f"Invalid input for query parameters {key}.")
    assert raised.value.message.endswith("is too long")


def entries(n: int) -> list[dict]:
    return [{"id": f"id-{i}"} for i in range(n)]


@pytest.mark.parametrize("query, max_limit, count, linked", [
    ("", 3, 3, True),  # no limit: a page of max_limit is full
    ("", 3, 2, False),
    ("limit=2", 1000, 2, True),
    ("limit=2", 1000, 1, False),
    ("limit=5", 3, 3, True),  # a limit above max_limit: full at max_limit
    ("limit=0", 1000, 0, False),
    ("", 3, 0, False),
], ids=["full-default", "short-default", "full-limit", "short-limit", "capped", "zero",
        "empty"])
def test_next_link_only_on_a_full_page(query, max_limit, count, linked):
    request = call(query, max_limit=max_limit)
    page = paging.requested_page(request)
    links = paging.next_links(request, "servers", page, entries(count))
    assert bool(links) is linked
    if linked:
        assert links[0]["rel"] == "next"
        assert dict(parse_qsl(urlsplit(links[0]["href"]).query))["marker"] == f"id-{count - 1}"


def test_next_link_keeps_the_request_url_base_and_its_parameters():
    request = call("marker=old&limit=2&limit=1&zeta=z&alpha=a",
                   api_root="https://cloud.example/compute/v2.1/proj7")
    page = paging.requested_page(request)
    [link] = paging.next_links(request, "os-hypervisors/detail", page,
                               [{"id": 7}, {"id": 9, "flavorid": "x"}][:1])
    assert link["href"] == ("https://cloud.example/compute/v2.1/proj7/os-hypervisors/detail"
                            "?alpha=a&limit=1&marker=7&zeta=z")


def test_next_link_by_another_id_key():
    request = call("limit=1")
    [link] = paging.next_links(request, "flavors", paging.requested_page(request),
                               [{"id": "ignored", "flavorid": "m1.x y"}], id_key="flavorid")
    assert link["href"] == "http://api.example:8774/v2.1/flavors?limit=1&marker=m1.x+y"


def test_with_links_leaves_the_key_out_without_a_link():
    assert paging.with_links({"servers": []}, "servers", []) == {"servers": []}
    link = [{"rel": "next", "href": "h"}]
    assert paging.with_links({"servers": []}, "servers", link) == {
        "servers": [], "servers_links": link}
