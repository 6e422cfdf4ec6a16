"""Fixtures shared by the functional tests."""

from tests.functional.netns import executor, netns, netns_tier, tools  # noqa: F401
