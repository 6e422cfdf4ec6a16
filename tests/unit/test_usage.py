"""Node usage from database rows (nova-semantics section 7)."""

import datetime as dt

import pytest

from agent import vocabulary as s
from agent.compute.usage import (Flavor, Reserved, TrackedInstance, allocation_ratio,
                                 compute_usage, instances_on_node, newest_migrations)
from agent.db.records import MigrationRecord

HOST, NODE = "cmp1", "node1"
SMALL = Flavor(vcpus=1, memory_mb=512, root_gb=1, ephemeral_gb=0, swap=0)
LARGE = Flavor(vcpus=4, memory_mb=4096, root_gb=40, ephemeral_gb=10, swap=2048)


def inst(uuid, vm=s.ACTIVE, task=None, flavor=SMALL, host=HOST, node=NODE, project="p1",
         os_type="linux", old=None, new=None):
    return TrackedInstance(uuid=uuid, host=host, node=node, vm_state=vm, task_state=task,
                           flavor=flavor, project_id=project, os_type=os_type, old_flavor=old,
                           new_flavor=new)


def mig(mid, uuid, src=HOST, dst="other", status="migrating", kind="migration", age=0):
    return MigrationRecord(id=mid, uuid=f"mig-{mid}", instance_uuid=uuid, source_compute=src,
                           dest_compute=dst, source_node=NODE if src == HOST else "n-" + src,
                           dest_node=NODE if dst == HOST else "n-" + dst,
                           migration_type=kind, status=status,
                           created_at=dt.datetime(2026, 1, 1) + dt.timedelta(minutes=age))


def usage(instances, migrations=(), reserved=Reserved(memory_mb=512), extra=()):
    by_uuid = {i.uuid: i for i in list(instances) + list(extra)}
    return compute_usage(memory_mb=16384, local_gb=100, node_instances=list(instances),
                         migrations=list(migrations), instances_by_uuid=by_uuid, host=HOST,
                         nodename=NODE, reserved=reserved, driver_stats={"uptime": "5"})


def test_usage_sums_flavors_and_reserved():
    u = usage([inst("a"), inst("b", flavor=LARGE)],
              reserved=Reserved(memory_mb=512, disk_mb=2048, cpus=2))
    assert u.vcpus_used == 2 + 1 + 4
    assert u.memory_mb_used == 512 + 512 + 4096
    assert u.local_gb_used == 2 + 1 + 40 + 10 + 2  # swap 2048 MiB counts as 2 GB
    assert u.free_ram_mb == 16384 - u.memory_mb_used
    assert u.free_disk_gb == 100 - u.local_gb_used
    assert u.running_vms == 2


@pytest.mark.parametrize("vm,task,counted", [
    (s.DELETED, None, False),
    (s.SHELVED_OFFLOADED, None, False),
    (s.SHELVED_OFFLOADED, s.SPAWNING, True),
    (s.STOPPED, None, True),
    (s.ERROR, None, True),
], ids=["deleted", "offloaded", "offloaded-spawning", "stopped", "error"])
def test_which_instances_count(vm, task, counted):
    u = usage([inst("a", vm=vm, task=task)])
    assert u.running_vms == (1 if counted else 0)
    assert u.memory_mb_used == 512 + (512 if counted else 0)


def test_stats_follow_nova_keys():
    u = usage([inst("a"), inst("b", vm=s.STOPPED, task=s.IMAGE_BACKUP, project="p2"),
               inst("c", vm=s.BUILDING, task=s.SPAWNING, os_type="windows")])
    assert u.stats["num_instances"] == "3"
    assert u.stats["num_vm_active"] == "1"
    assert u.stats["num_vm_stopped"] == "1"
    assert u.stats["num_vm_building"] == "1"
    assert u.stats["num_task_None"] == "1"
    assert u.stats["num_task_image_backup"] == "1"
    assert u.stats["num_proj_p1"] == "2"
    assert u.stats["num_proj_p2"] == "1"
    assert u.stats["num_os_type_linux"] == "2"
    assert u.stats["num_os_type_windows"] == "1"
    assert u.stats["io_workload"] == "2"  # building + image_backup
    assert u.stats["uptime"] == "5"  # driver stats kept
    assert u.current_workload == 2  # tasks other than None


def test_outbound_resize_of_untracked_instance_holds_old_flavor():
    moved = inst("m", vm=s.RESIZED, host="other", node="n-other", old=SMALL, new=LARGE,
                 flavor=LARGE)
    u = usage([], [mig(1, "m", src=HOST, dst="other")], extra=[moved])
    assert u.vcpus_used == SMALL.vcpus
    assert u.migration_ids == frozenset({1})


def test_incoming_resize_holds_new_flavor():
    coming = inst("m", vm=s.ACTIVE, task=s.RESIZE_MIGRATED, host="other", node="n-other",
                  old=SMALL, new=LARGE, flavor=SMALL)
    u = usage([], [mig(1, "m", src="other", dst=HOST)], extra=[coming])
    assert u.vcpus_used == LARGE.vcpus


def test_same_node_resize_holds_both_flavors():
    resizing = inst("m", vm=s.RESIZED, old=SMALL, new=LARGE, flavor=LARGE)
    u = usage([resizing], [mig(1, "m", src=HOST, dst=HOST)])
    assert u.vcpus_used == LARGE.vcpus + SMALL.vcpus


def test_migration_of_instance_not_moving_is_ignored():
    idle = inst("m", vm=s.ACTIVE, host="other", node="n-other")
    u = usage([], [mig(1, "m", src=HOST, dst="other")], extra=[idle])
    assert u.vcpus_used == 0 and not u.migration_ids


def test_newest_in_progress_migration_wins():
    rows = [mig(1, "m", age=0), mig(2, "m", age=5), mig(3, "m", age=9, status="completed")]
    assert [m.id for m in newest_migrations(rows)] == [2]


def test_instances_without_node_belong_to_the_only_node():
    rows = [inst("a", node=None), inst("b", node="othernode"), inst("c", host="x")]
    assert [i.uuid for i in instances_on_node(rows, HOST, NODE, only_node=True)] == ["a"]
    assert instances_on_node(rows, HOST, NODE, only_node=False) == []


@pytest.mark.parametrize("configured,stored,expected", [
    (None, None, 4.0), (None, 0.0, 4.0), (None, 2.0, 2.0), (8.0, 2.0, 8.0), (0.0, 3.0, 3.0),
], ids=["new", "zero-stored", "keep-stored", "conf-wins", "zero-conf-ignored"])
def test_allocation_ratio(configured, stored, expected):
    assert allocation_ratio(configured, stored, 4.0) == expected


def test_free_resources_are_the_filter_schedulers_figures():
    from agent.compute.usage import FreeResources, compute_usage, free_resources

    reserved = Reserved(memory_mb=512, disk_mb=2048, cpus=2)
    big = Flavor(vcpus=4, memory_mb=4096, root_gb=20)
    usage = compute_usage(memory_mb=32768, local_gb=100, node_instances=[
        TrackedInstance(str(i), "h", "n", s.ACTIVE, None, big) for i in range(2)],
        migrations=[], instances_by_uuid={}, host="h", nodename="n", reserved=reserved)
    free = free_resources(vcpus=16, memory_mb=32768, local_gb=100, usage=usage,
                          cpu_allocation_ratio=4.0, ram_allocation_ratio=1.5,
                          disk_allocation_ratio=1.0)
    # total x ratio - used, the reserve counted in used (CoreFilter, RamFilter, DiskFilter).
    assert free == FreeResources(vcpus=16 * 4 - (2 + 8),
                                 memory_mb=32768 * 3 // 2 - (512 + 8192),
                                 disk_gb=100 - (2 + 40))
    # The driver's disk_available_least, when reported, is the free disk.
    least = free_resources(vcpus=16, memory_mb=32768, local_gb=100, usage=usage,
                           cpu_allocation_ratio=1.0, ram_allocation_ratio=1.0,
                           disk_allocation_ratio=2.0, disk_available_least=30)
    assert least.disk_gb == 100 * 2 - (100 - 30)


def test_free_resources_agree_with_the_filter_scheduler():
    from agent.compute.usage import compute_usage, free_resources
    from agent.control.scheduler import HostState, Request, core_filter, disk_filter, ram_filter

    usage = compute_usage(memory_mb=8192, local_gb=50, node_instances=[
        TrackedInstance("a", "h", "n", s.ACTIVE, None, Flavor(vcpus=3, memory_mb=3000))],
        migrations=[], instances_by_uuid={}, host="h", nodename="n",
        reserved=Reserved(memory_mb=512, cpus=1))
    free = free_resources(vcpus=4, memory_mb=8192, local_gb=50, usage=usage,
                          cpu_allocation_ratio=2.0, ram_allocation_ratio=1.0,
                          disk_allocation_ratio=1.5)
    assert (free.vcpus, free.memory_mb) == (4, 8192 - 3512)
    node = HostState("h", "n", False, None, False, None, vcpus=4, vcpus_used=usage.vcpus_used,
                     memory_mb=8192, free_ram_mb=usage.free_ram_mb, local_gb=50,
                     free_disk_gb=usage.free_disk_gb, disk_available_least=None,
                     cpu_allocation_ratio=2.0, ram_allocation_ratio=1.0,
                     disk_allocation_ratio=1.5)
    # Exactly the free figure fits; one unit more is refused.
    for check, fits, more in (
            (core_filter, Request(free.vcpus, 0), Request(free.vcpus + 1, 0)),
            (ram_filter, Request(0, free.memory_mb), Request(0, free.memory_mb + 1)),
            (disk_filter, Request(0, 0, root_gb=free.disk_gb),
             Request(0, 0, root_gb=free.disk_gb + 1))):
        assert check(node, fits) is None and check(node, more) is not None
