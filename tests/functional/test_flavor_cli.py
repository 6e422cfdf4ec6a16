"""`agent flavor ...` through the real command line, on every backend: nova's rules for a new
flavor, lookup by id or name, delete."""

from __future__ import annotations

import json

import pytest

from agent.cli import main


@pytest.fixture
def cli(any_db_url, capsys):
    def run(*args: str) -> tuple[int, str, str]:
        try:
            status = main(["flavor", *args, "--db", any_db_url])
        except SystemExit as exc:
            status = exc.code
        out, err = capsys.readouterr()
        return status, out, err
    return run


def listed(cli) -> dict[str, dict]:
    status, out, _ = cli("list", "--format", "json")
    assert status == 0
    return {f["name"]: f for f in json.loads(out)["flavors"]}


def test_create_show_list_delete(cli):
    status, out, err = cli("create", "m1.nano", "--id", "42", "--vcpus", "1", "--ram", "64",
                           "--disk", "0", "--swap", "16")
    assert (status, err) == (0, "")
    assert "m1.nano" in out
    flavor = listed(cli)["m1.nano"]
    assert (flavor["id"], flavor["vcpus"], flavor["ram"], flavor["disk"], flavor["swap"]) == (
        "42", 1, 64, 0, 16)
    for key in ("42", "m1.nano"):
        status, out, _ = cli("show", key, "--format", "json")
        assert status == 0 and json.loads(out)["name"] == "m1.nano"
    status, out, _ = cli("delete", "m1.nano")
    assert status == 0 and "deleted" in out
    assert "m1.nano" not in listed(cli)
    status, _, err = cli("show", "42")
    assert status == 1 and "no flavor with id or name '42'" in err


def test_default_id_is_a_uuid(cli):
    assert cli("create", "auto", "--vcpus", "2", "--ram", "128")[0] == 0
    assert len(listed(cli)["auto"]["id"]) == 36


@pytest.mark.parametrize("args, named", [
    (("--vcpus", "0", "--ram", "64"), "--vcpus 0: expected an integer from 1"),
    (("--vcpus", "1", "--ram", "0"), "--ram 0: expected an integer from 1"),
    (("--vcpus", "1", "--ram", "64", "--disk", "-1"), "--disk -1: expected an integer from 0"),
    (("--vcpus", "1", "--ram", "64", "--swap", "-1"), "--swap -1: expected an integer from 0"),
    (("--vcpus", "1", "--ram", str(2**31)), f"--ram {2**31}: expected"),
    (("--vcpus", "1", "--ram", "64", "--id", "a/b"), "--id 'a/b': expected"),
    (("--vcpus", "1", "--ram", "64", "--ephemeral", str(2**31)), f"--ephemeral {2**31}"),
    (("--vcpus", "1", "--ram", "64", "--id", "i" * 256),
     "--id 'iiiiiiiiii" + "i" * 50 + "'... (256 characters): expected"),
])
def test_bad_values_exit_2_and_create_nothing(cli, args, named):
    status, out, err = cli("create", "bad", *args)
    assert status == 2
    assert err.count("\n") == 1 and named in err
    assert "bad" not in listed(cli)


def test_bad_name_exit_2(cli):
    status, _, err = cli("create", " padded", "--vcpus", "1", "--ram", "64")
    assert status == 2 and "NAME ' padded'" in err


def test_show_writes_an_unset_description_as_a_dash(cli):
    assert cli("create", "plain", "--vcpus", "1", "--ram", "64")[0] == 0
    status, out, _ = cli("show", "plain")
    assert status == 0 and "description  -\n" in out and "None" not in out


def test_duplicate_name_and_id_refused(cli):
    assert cli("create", "one", "--id", "7", "--vcpus", "1", "--ram", "64")[0] == 0
    status, _, err = cli("create", "one", "--vcpus", "1", "--ram", "64")
    assert status == 1 and "name 'one' already exists" in err
    status, _, err = cli("create", "two", "--id", "7", "--vcpus", "1", "--ram", "64")
    assert status == 1 and "flavorid '7' already exists" in err
    assert set(listed(cli)) >= {"one"} and "two" not in listed(cli)


def test_sqlite_has_novas_default_flavors(tmp_path, capsys):
    url = f"sqlite:///{tmp_path}/fresh.sqlite"
    assert main(["db", "sync", "--db", url]) == 0
    capsys.readouterr()
    assert main(["flavor", "list", "--format", "json", "--db", url]) == 0
    flavors = {f["name"]: f for f in json.loads(capsys.readouterr().out)["flavors"]}
    assert list(flavors) == ["m1.tiny", "m1.small", "m1.medium", "m1.large", "m1.xlarge"]
    assert (flavors["m1.tiny"]["ram"], flavors["m1.tiny"]["disk"]) == (512, 1)
