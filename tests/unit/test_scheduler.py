"""The filter scheduler's filters and weigher, one table each (nova's semantics)."""

from __future__ import annotations

import dataclasses
import random

import pytest

from agent.control.errors import NoValidHost
from agent.control.scheduler import (HostState, Request, compute_filter, core_filter,
                                     disk_filter, ram_filter, select_destination)

BASE = HostState(host="h1", node="n1", disabled=False, disabled_reason=None, forced_down=False,
                 down_reason=None, vcpus=4, vcpus_used=0, memory_mb=4096, free_ram_mb=3584,
                 local_gb=100, free_disk_gb=100, disk_available_least=None,
                 cpu_allocation_ratio=1.0, ram_allocation_ratio=1.0, disk_allocation_ratio=1.0)
TINY = Request(vcpus=1, memory_mb=512, root_gb=1)


def host(**changes) -> HostState:
    return dataclasses.replace(BASE, **changes)


@pytest.mark.parametrize("changes, reason", [
    ({}, None),
    ({"disabled": True}, "service disabled"),
    ({"disabled": True, "disabled_reason": "maintenance"}, "service disabled (maintenance)"),
    ({"forced_down": True}, "service forced down"),
    ({"down_reason": "last seen 75 s ago"}, "service down (last seen 75 s ago)"),
])
def test_compute_filter(changes, reason):
    assert compute_filter(host(**changes), TINY) == reason


@pytest.mark.parametrize("changes, vcpus, passes", [
    ({}, 4, True),                                        # exactly the node
    ({}, 5, False),                                       # more than the node has
    ({"vcpus_used": 3}, 1, True),                         # the last one
    ({"vcpus_used": 4}, 1, False),                        # full
    ({"vcpus_used": 4, "cpu_allocation_ratio": 2.0}, 4, True),   # overcommitted 2x
    ({"vcpus_used": 5, "cpu_allocation_ratio": 2.0}, 4, False),
    ({"cpu_allocation_ratio": 16.0, "vcpus_used": 60}, 5, False),  # > physical vcpus
])
def test_core_filter(changes, vcpus, passes):
    assert (core_filter(host(**changes), Request(vcpus=vcpus, memory_mb=1)) is None) is passes


@pytest.mark.parametrize("changes, memory_mb, passes", [
    ({}, 3584, True),                                     # all that is free (512 reserved)
    ({}, 3585, False),
    ({"ram_allocation_ratio": 1.5}, 5632, True),          # 4096*1.5 - 512 used
    ({"ram_allocation_ratio": 1.5}, 5633, False),
    ({"free_ram_mb": -100}, 1, False),                    # overcommitted already
    ({"free_ram_mb": -100, "ram_allocation_ratio": 2.0}, 3996, True),
])
def test_ram_filter(changes, memory_mb, passes):
    assert (ram_filter(host(**changes), Request(vcpus=1, memory_mb=memory_mb)) is None) is passes


@pytest.mark.parametrize("changes, request_, passes", [
    ({}, Request(1, 1, root_gb=100), True),
    ({}, Request(1, 1, root_gb=100, swap=1), False),      # swap counts, in MiB
    ({}, Request(1, 1, root_gb=60, ephemeral_gb=41), False),
    ({"free_disk_gb": 10}, Request(1, 1, root_gb=10), True),
    ({"free_disk_gb": 10, "disk_available_least": 5}, Request(1, 1, root_gb=10), False),
    ({"free_disk_gb": 10, "disk_allocation_ratio": 2.0}, Request(1, 1, root_gb=110), True),
    ({"free_disk_gb": 10, "disk_allocation_ratio": 2.0}, Request(1, 1, root_gb=111), False),
])
def test_disk_filter(changes, request_, passes):
    assert (disk_filter(host(**changes), request_) is None) is passes


def test_the_most_free_ram_wins():
    hosts = [host(host="a", node="a", free_ram_mb=1000), host(host="b", node="b"),
             host(host="c", node="c", free_ram_mb=2000)]
    assert select_destination(hosts, TINY, random.Random(0)).host == "b"


def test_ties_broken_by_the_rng():
    hosts = [host(host=name, node=name) for name in "abcd"]
    picks = {select_destination(hosts, TINY, random.Random(seed)).host for seed in range(40)}
    assert picks == set("abcd")
    again = [select_destination(hosts, TINY, random.Random(7)).host for _ in range(3)]
    assert len(set(again)) == 1


def test_a_filtered_node_is_never_chosen_for_its_ram():
    hosts = [host(host="big", node="big", free_ram_mb=4000, disabled=True),
             host(host="small", node="small", free_ram_mb=600)]
    assert select_destination(hosts, TINY, random.Random(0)).host == "small"


def test_requested_host_still_passes_the_filters():
    hosts = [host(host="a", node="a"), host(host="b", node="b", forced_down=True)]
    assert select_destination(hosts, TINY, random.Random(0), "a").host == "a"
    with pytest.raises(NoValidHost) as refused:
        select_destination(hosts, TINY, random.Random(0), "b")
    assert refused.value.failures == (("b", "b", "ComputeFilter", "service forced down"),)


def test_no_valid_host_says_what_each_node_failed_on():
    hosts = [host(host="a", node="a", disabled=True),
             host(host="b", node="b", free_ram_mb=100),
             host(host="c", node="c", vcpus_used=4)]
    with pytest.raises(NoValidHost) as refused:
        select_destination(hosts, TINY, random.Random(0))
    text = str(refused.value)
    assert "a (a): ComputeFilter: service disabled" in text
    assert "b (b): RamFilter: 512 MiB RAM requested, 100 MiB usable" in text
    assert "c (c): CoreFilter: 1 vCPU requested, 0 free" in text


@pytest.mark.parametrize("hosts, requested, words", [
    ([], None, "no compute node"),
    ([BASE], "elsewhere", "no compute node on host elsewhere"),
])
def test_no_node_at_all(hosts, requested, words):
    with pytest.raises(NoValidHost, match=words):
        select_destination(hosts, TINY, random.Random(0), requested)
