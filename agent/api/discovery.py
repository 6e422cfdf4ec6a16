"""Version discovery: `GET /` lists the versions, `GET /v2.1` and `/v2.1/` describe v2.1. Both
answer 200 without a redirect and carry a self link: the clients read `version` and
`min_version` from them to negotiate, and fail on a 404 or an empty link list."""

from __future__ import annotations

from agent.api.microversion import MAX_VERSION, MIN_VERSION

UPDATED = "2013-07-23T11:33:21Z"  # nova's date for v2.1


def version_doc(base_url: str) -> dict:
    """The v2.1 entry; `base_url` is the scheme, host and script root (no trailing '/')."""
    return {"id": "v2.1", "status": "CURRENT", "version": str(MAX_VERSION),
            "min_version": str(MIN_VERSION), "updated": UPDATED,
            "links": [{"rel": "self", "href": f"{base_url}/v2.1/"}]}


def versions(base_url: str) -> dict:
    return {"versions": [version_doc(base_url)]}


def version(base_url: str) -> dict:
    return {"version": version_doc(base_url)}
