"""Paging of the list answers, as nova pages them (nova.api.openstack.common's
get_limit_and_marker and the view builders' collection links), one rule for every collection.

- `limit`: a whole number of digits (`^[0-9]+$`; with several values nova reads the last, each
  one checked); anything else is 400 `Invalid input for query parameters limit. Value: V. ...`.
  The page holds min(limit, [api] max_limit) entries; no limit means max_limit; 0 an empty
  page. Where nova's schema takes one value only (os-hypervisors from 2.53), a second is 400.
- `marker`: the id of the last entry the client has seen (last value wins, as for limit); the
  page starts after it in the collection's order. The resource resolves it; one it cannot find
  (or one with control characters, which no id holds) is 400 `marker [X] not found`.
- A `<collection>_links` list with one `{"rel": "next", "href": ...}` whenever the page is
  full (as many entries as its size, size above 0), even when no entry follows: nova's rule,
  so a walk ends on a short or empty page. The href is the request's own URL base (scheme,
  host, script root, `/v2.1` and the project segment it had) and collection, with the request's
  query parameters (the last value of each, sorted by name) and `marker` set to the last
  entry's id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlencode

from agent.api.context import Call
from agent.api.faults import ApiError
from agent.values import has_control_characters

_DIGITS = re.compile(r"[0-9]+\Z")


@dataclass(frozen=True)
class Page:
    """One page's request: `size` the most entries (0: none), `marker` the id after which it
    starts (None: from the first)."""
    size: int
    marker: str | None


def requested_page(call: Call, *, single: bool = False) -> Page:
    """The page a list request asks for (see the module's rules); `single`: refuse a repeated
    limit or marker (nova's schema for os-hypervisors from 2.53). ApiError 400."""
    size = call.max_limit
    limits = _values(call, "limit", single)
    for value in limits:
        if not value:
            raise ApiError(400, f"Invalid input for query parameters limit. Value: {value}. "
                                f"{value!r} should be non-empty")
        if not _DIGITS.match(value):
            raise ApiError(400, f"Invalid input for query parameters limit. Value: "
                                f"{value[:60]}. {value[:60]!r} does not match '^[0-9]*$'")
    if limits:
        size = min(size, int(limits[-1]))
    markers = _values(call, "marker", single)
    marker = markers[-1] if markers else None
    if marker is not None and has_control_characters(marker):
        # No id of any collection holds one (and PostgreSQL refuses a NUL in a statement).
        raise marker_not_found(marker[:60])
    return Page(size=size, marker=marker)


def _values(call: Call, key: str, single: bool) -> list[str]:
    values = list(call.query_lists.get(key, ()))
    if not values and key in call.query:  # a Call built without query_lists
        values = [call.query[key]]
    if single and len(values) > 1:
        raise ApiError(400, f"Invalid input for query parameters {key}. Value: {values}. "
                            f"{values} is too long")
    return values


def marker_not_found(marker: str) -> ApiError:
    return ApiError(400, f"marker [{marker}] not found")


def next_links(call: Call, collection: str, page: Page, entries: list[dict],
               id_key: str = "id") -> list[dict]:
    """The `<collection>_links` of a page of `entries` (each carrying `id_key`): one next link
    when the page is full, else none. `collection` is the path after /v2.1, e.g.
    'os-hypervisors/detail'."""
    if not page.size or len(entries) != page.size:
        return []
    params = {key: values[-1] for key, values in sorted(_query_lists(call).items()) if values}
    params["marker"] = str(entries[-1][id_key])
    href = f"{call.api_root or call.base_url + '/v2.1'}/{collection}?{urlencode(params)}"
    return [{"rel": "next", "href": href}]


def _query_lists(call: Call) -> dict[str, list[str]]:
    if call.query_lists:
        return dict(call.query_lists)
    return {key: [value] for key, value in call.query.items()}


def page_answer(call: Call, name: str, collection: str, page: Page, found,
                entries_of: Callable[[object], list[dict]]) -> dict:
    """The answer to one page of a list: `{name: entries}` with `<name>_links` when the page
    is full. `found` is what the resource read for `page` (None: its marker names nothing, a
    400), `entries_of(found)` the answer's entries."""
    if found is None:
        raise marker_not_found(page.marker or "")
    entries = entries_of(found)
    return with_links({name: entries}, name, next_links(call, collection, page, entries))


def with_links(body: dict, name: str, links: list[dict]) -> dict:
    """`body` with `<name>_links` added when there is a link (nova leaves the key out
    otherwise)."""
    if links:
        body[f"{name}_links"] = links
    return body
