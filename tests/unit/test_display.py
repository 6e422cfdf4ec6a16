"""Table cells, counted nouns and versions as people read them."""

import pytest

from agent.display import clip, escape, grid, pairs, plural, version_text


@pytest.mark.parametrize("text,shown", [
    ("plain text, ünïcode", "plain text, ünïcode"),
    ("two\nlines", "two\\nlines"),
    ("cr\rtab\t", "cr\\rtab\\t"),
    ("\x1b[2Jcleared", "\\x1b[2Jcleared"),
    ("nul\x00del\x7fc1\x85", "nul\\x00del\\x7fc1\\x85"),
    ("line\u2028para\u2029", "line\\u2028para\\u2029"),
    ("abc\u202edcba", "abc\\u202edcba"),
    ("back\\slash", "back\\slash"),
], ids=["printable", "newline", "cr-tab", "escape-sequence", "c0-del-c1", "separators",
        "bidi-override", "backslash"])
def test_escape(text, shown):
    assert escape(text) == shown


@pytest.mark.parametrize("text,width,shown", [
    ("short", 10, "short"),
    ("exactly ten", 11, "exactly ten"),
    ("replace the power supply unit", 20, "replace the power..."),
    ("replace the power supply unit", 21, "replace the power..."),
    ("averyveryverylongwordwithoutspaces", 12, "averyvery..."),
    ("a b averyveryverylongword", 12, "a b avery..."),
    ("words, then more", 12, "words..."),
], ids=["fits", "fits-exactly", "word-boundary", "boundary-at-cut", "one-long-word",
        "boundary-too-early", "trailing-comma"])
def test_clip(text, width, shown):
    assert clip(text, width) == shown
    assert len(clip(text, width)) <= width


def test_grid_one_line_per_row_and_bounded_columns():
    out = grid(["Host", "Reason"], [["cn1", "a\nb"], ["cn2", "x " * 100], ["cn3", None]],
               widths={"Reason": 30})
    lines = out.splitlines()
    assert len(lines) == 4
    assert max(len(line) for line in lines) <= 4 + 2 + 30
    assert lines[1].split() == ["cn1", "a\\nb"]
    assert lines[3].split() == ["cn3", "-"]


@pytest.mark.parametrize("count,shown", [(0, "0 guests"), (1, "1 guest"), (2, "2 guests")])
def test_plural(count, shown):
    assert plural(count, "guest") == shown


def test_plural_irregular():
    assert plural(1, "entry", "entries") == "1 entry"
    assert plural(3, "entry", "entries") == "3 entries"


@pytest.mark.parametrize("version,shown", [
    (7002022, "7.2.22"), (8000000, "8.0.0"), (10010001, "10.10.1"), (1000, "0.1.0"),
    ("1.2.3", "1.2.3"), (None, None)])
def test_version_text(version, shown):
    assert version_text(version) == shown


def test_start_failed_reason_fits_the_column_cut_at_a_word():
    from agent.service import start_failed_reason

    reason = "cannot connect to libvirt at qemu:///system: " + "permission denied " * 20
    stored = start_failed_reason(reason)
    assert len(stored) <= 255 and stored.endswith("permission denied...")
    assert start_failed_reason("no libvirt") == "AUTO: start-up failed: no libvirt"


def test_pairs_show_an_unset_value_as_a_dash_and_a_mapping_as_json():
    # as 'agent server show' and 'agent flavor show' print an instance's image and flavor
    assert pairs([("image", None), ("flavor", {"name": "m1.tiny", "vcpus": 1}),
                  ("vcpus", 1), ("deleted", False)]) == (
        "image    -\n"
        'flavor   {"name": "m1.tiny", "vcpus": 1}\n'
        "vcpus    1\n"
        "deleted  False\n")
