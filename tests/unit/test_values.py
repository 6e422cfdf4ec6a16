"""The rules for outside values, one table per kind: what each accepts as it is and what it
refuses, with the "expected ..." that every caller puts in its one-line error."""

from __future__ import annotations

import pytest

from agent import values


@pytest.mark.parametrize("name", ["compute-1", "a", "h" * 255, "node_2.example.org", "10.0.0.1"])
def test_hostname_accepts(name):
    assert values.hostname(name) == name


@pytest.mark.parametrize("name", ["", "a b", "a\nb", "h" * 256, "-a", ".a", "hôte", "a/b", None,
                                  7], ids=["empty", "space", "newline", "long", "dash", "dot",
                                           "unicode", "slash", "none", "int"])
def test_hostname_refuses(name):
    with pytest.raises(values.BadValue, match="^expected a host name: 1 to 255 letters"):
        values.hostname(name)


@pytest.mark.parametrize("value, kwargs", [
    pytest.param("", {}, id="empty"), pytest.param("  ", {}, id="blank"),
    pytest.param("a\x00b", {}, id="nul"), pytest.param("a\x7fb", {}, id="del"),
    pytest.param("a\u0085b", {}, id="c1-control"), pytest.param("x" * 256, {}, id="long"),
    pytest.param("abc", {"max_length": 2}, id="over-max"), pytest.param(3, {}, id="not-str"),
])
def test_text_refuses(value, kwargs):
    with pytest.raises(values.BadValue, match="without control characters"):
        values.text(value, **kwargs)


def test_text_accepts_unicode_and_empty_when_asked():
    assert values.text("ü" * 255) == "ü" * 255
    assert values.text("", empty=True, max_length=None) == ""


@pytest.mark.parametrize("value, minimum, maximum, ok", [
    (0, 0, values.INT_MAX, True), (values.INT_MAX, 0, values.INT_MAX, True),
    (values.INT_MAX + 1, 0, values.INT_MAX, False), (-1, 0, values.INT_MAX, False),
    (2**63 - 1, 0, values.BIGINT_MAX, True), (2**63, 0, values.BIGINT_MAX, False),
    (True, 0, 1, False), ("1", 0, 1, False), (1.0, 0, 1, False),
])
def test_integer_within_its_column(value, minimum, maximum, ok):
    if ok:
        assert values.integer(value, minimum, maximum) == value
    else:
        with pytest.raises(values.BadValue, match=f"^expected an integer from {minimum} to "
                                                  f"{maximum}$"):
            values.integer(value, minimum, maximum)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), -0.5, "1", True])
def test_number_refuses_non_finite_and_out_of_range(value):
    with pytest.raises(values.BadValue, match="^expected a finite number of at least 0$"):
        values.number(value, 0)


def test_number_bounds_in_the_message():
    assert values.number(2, 0, 4) == 2.0
    with pytest.raises(values.BadValue, match="^expected a finite number from 0 to 4 s$"):
        values.number(5, 0, 4, "s")


@pytest.mark.parametrize("maps, ok", [
    ([], True), (["0:100000:65536"], True), (["0:1:1"] * 5, True), (["0:1:1"] * 6, False),
    (["banana"], False), (["0:1"], False), (["0:1:0"], False), ([f"0:{2**32}:1"], False),
])
def test_id_maps(maps, ok):
    if ok:
        assert values.id_maps(maps) == maps
    else:
        with pytest.raises(values.BadValue, match="'guest:host:count'"):
            values.id_maps(maps)


def test_writable_file(tmp_path):
    assert values.writable_file(str(tmp_path / "agent.log")) == str(tmp_path / "agent.log")
    with pytest.raises(values.BadValue, match=f"{tmp_path}/missing does not exist"):
        values.writable_file(str(tmp_path / "missing" / "agent.log"))
    with pytest.raises(values.BadValue, match="a writable regular file"):
        values.writable_file(str(tmp_path))


def test_directory(tmp_path):
    (tmp_path / "file").write_text("")
    assert values.directory(str(tmp_path)) == str(tmp_path)
    assert values.directory(str(tmp_path / "new" / "deeper")) == str(tmp_path / "new" / "deeper")
    with pytest.raises(values.BadValue, match="is not one"):
        values.directory(str(tmp_path / "file"))
    with pytest.raises(values.BadValue, match=f"{tmp_path}/file is not a writable directory"):
        values.directory(str(tmp_path / "file" / "under"))


def test_shown_escapes_and_cuts():
    assert values.shown("a\nb") == "'a\\nb'"
    assert values.shown(9223372036854775807) == "9223372036854775807"
    assert values.shown("x" * 300) == f"{'x' * 60!r}... (300 characters)"


@pytest.mark.parametrize("prefix, ok", [
    ("cagent", True), ("a" * 14, True), ("a" * 15, False), ("9agent", False), ("c-agent", False),
    ("", False),
])
def test_chain_prefix_leaves_room_in_28_characters(prefix, ok):
    if ok:
        assert len(f"{prefix}-i{'0' * 12}") <= 28
        assert values.chain_prefix(prefix) == prefix
    else:
        with pytest.raises(values.BadValue, match="a letter followed by at most 13"):
            values.chain_prefix(prefix)
