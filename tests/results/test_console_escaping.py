"""Terminal output of a record (clbench.results.console): control characters from the
record (an ESC in an error text or a deviation) reach the terminal as escapes, never raw."""
from __future__ import annotations

import io

from rich.console import Console

from clbench.results.console import print_record

from handmade_records import make_record


def test_control_characters_from_a_record_never_reach_the_terminal_raw():
    record = make_record("er", 0, status="failed", deviations=["dev\x1b[2J wipe"])
    record.error = "boom\x1b]0;pwned\x07\rhidden"
    record.nonfinite = ["matrix[1][0]\x1b[31m"]
    out = io.StringIO()
    print_record(record, Console(file=out, force_terminal=False, color_system=None, width=200))
    text = out.getvalue()
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text
    assert r"boom\x1b]0;pwned\x07\rhidden" in text and r"dev\x1b[2J wipe" in text
