"""The one size, age and table formatter every display uses (``intake_bfa.display.text``)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from intake_bfa.display.text import age, dict_table, display_width, human_size, text_table


def test_human_size_uses_binary_units_everywhere():
    assert human_size(None) == ""
    assert human_size(None, "-") == "-"
    assert human_size(5) == "5 B"
    assert human_size(1536) == "1.5 KiB"
    # The figure `bfa versions` and repr(list_versions()) used to disagree on.
    assert human_size(6_051_210) == "5.8 MiB"
    assert human_size(3 << 30) == "3.0 GiB"


def test_age():
    assert age(None) == "an unknown time"
    assert age(42) == "42 seconds"
    assert age(300) == "5 minutes"
    assert age(3 * 3600) == "3.0 hours"
    assert age(3 * 86400) == "3.0 days"


def test_text_table_aligns_wide_characters_and_right_aligns_numbers():
    table = text_table(
        ["symbol", "rows"], [["币安USDT", 5], ["BTCUSDT", 12345]], right=[False, True]
    )
    lines = table.splitlines()
    assert [display_width(line) for line in lines] == [display_width(lines[0])] * 3
    assert lines[2].endswith("12345") and lines[1].endswith("    5")


def test_dict_table_and_rule():
    table = dict_table([{"a": 1, "b": None}], ["a", "b"])
    assert table.splitlines() == ["a  b", "1"]
    assert text_table(["x"], [["yy"]], rule=True).splitlines() == ["x", "--", "yy"]


# Printable text without spaces or separators (a trailing space would be stripped).
cell = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Z")), max_size=8)


@given(st.lists(st.tuples(cell, cell), max_size=6))
def test_text_table_columns_line_up_for_any_text(rows):
    table = text_table(["first", "second"], [list(r) for r in rows], rule=True)
    width = max([display_width("first")] + [display_width(r[0]) for r in rows])
    for line, (first, second) in zip(table.split("\n")[2:], rows, strict=True):
        assert line.startswith(first)
        if second:  # the second column starts at the same terminal column on every line
            assert display_width(line) == width + 2 + display_width(second)
