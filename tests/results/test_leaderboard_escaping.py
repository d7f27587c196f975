"""Text from records never acts as markup (clbench.results.leaderboard): control characters
(\\r, \\t, \\f, \\x00-\\x1f) and the specials of LaTeX, HTML and Markdown in record errors,
file names, labels and deviations come out escaped; a \\r never ends a ``% skipped``
comment (pdflatex must not run an ``\\input`` planted after it)."""
from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from clbench.results import records
from clbench.results.leaderboard.formats import printable

from handmade_records import board_md, make_record

CONTROLS = "".join(chr(c) for c in range(32) if chr(c) != "\n") + "\x7f\x85\u2028\u2029"
PLANT = "\\input{planted.tex}"


def _hostile(root) -> None:
    """A good record whose label and deviations carry every control character and
    special, and a failed one whose error text and file name plant an \\input after a \\r."""
    nasty = "a\rb\tc\fd\x00e\x1bf|g<h>i&j%k$l#m_n{o}p~q^r\\s`t*u" + CONTROLS
    records.save(make_record("er", 0, strategy_config={"tag": nasty}, deviations=[f"dev {nasty}\r{PLANT}"]), root)
    bad = make_record("naive", 1, status="failed", run_id="fail")
    bad.error = f"RuntimeError: boom\r{PLANT}\n\\input{{planted.tex}} <script>alert(1)</script> |x|"
    path = records.save(bad, root)
    path.rename(path.with_name(f"fail\r{PLANT}`|<b>.json"))  # a file name is text from the disk too


def test_printable_shows_every_control_character_as_an_escape():
    text = printable("a\rb\tc\x00d\x1b" + CONTROLS + "\ne")
    assert not re.search(r"[\x00-\x1f\x7f\x85\u2028\u2029]", text)
    assert text.startswith(r"a\rb\tc\x00d\x1b") and text.endswith(r"\ne")


def _tex_lines(tex: str) -> list[str]:
    return re.split(r"\r\n|\r|\n", tex)  # TeX ends a line at any of these


def test_latex_escapes_control_characters_and_specials(tmp_path, capsys):
    _hostile(tmp_path)
    code, tex, err = board_md(capsys, tmp_path, "--format", "latex")
    assert code == 0, err
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f\x85\u2028\u2029]", tex)  # only \n ends a line
    for line in _tex_lines(tex):
        if "input" in line:  # a planted \input only ever as escaped text or inside a comment
            assert line.lstrip().startswith("%") or "\\input" not in line.replace(r"\textbackslash{}input", ""), line
    body = tex.split(r"\begin{document}")[-1]
    assert r"\textbackslash{}input\{planted.tex\}" in body  # the deviation, shown as text
    skipped = [ln for ln in tex.splitlines() if ln.startswith("% skipped")]
    assert len(skipped) == 1 and r"boom\textbackslash{}r\textbackslash{}input" in skipped[0]


def test_html_escapes_control_characters_and_markup(tmp_path, capsys):
    _hostile(tmp_path)
    page = tmp_path / "b.html"
    code, _, err = board_md(capsys, tmp_path, "--format", "html", "--out", page)
    assert code == 0, err
    html = page.read_text()
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f\x85\u2028\u2029]", html)
    assert "<script>" not in html and "&lt;script&gt;" in html

    class Tags(HTMLParser):
        seen: set = set()

        def handle_starttag(self, tag, attrs):
            self.seen.add(tag)

    parser = Tags()
    parser.feed(html)
    assert "script" not in parser.seen


def test_markdown_escapes_control_characters_and_table_breakers(tmp_path, capsys):
    _hostile(tmp_path)
    code, md, err = board_md(capsys, tmp_path)
    assert code == 0, err
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f\x85\u2028\u2029]", md)
    assert "<script>" not in md
    row = next(ln for ln in md.splitlines() if ln.startswith("| 1 "))
    assert len(re.findall(r"(?<!\\)\|", row)) == len(re.findall(r"(?<!\\)\|", md.splitlines()[
        next(i for i, ln in enumerate(md.splitlines()) if ln.startswith("| #"))]))  # no cell split by a "|"
    skipped = md.split("## Skipped records")[1]
    item = next(ln for ln in skipped.splitlines() if "fail" in ln)
    assert r"\r" in item and "boom" in item and "\\input" in item  # on one line, visible


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_pdflatex_never_runs_a_planted_input(tmp_path, capsys):
    _hostile(tmp_path / "r")
    _, tex, _ = board_md(capsys, tmp_path / "r", "--format", "latex")
    (tmp_path / "board.tex").write_text(tex)
    (tmp_path / "planted.tex").write_text("\\typeout{PLANTED-INPUT-RAN}\n")
    (tmp_path / "doc.tex").write_text(
        "\\documentclass{article}\n\\usepackage[T1]{fontenc}\n\\usepackage{booktabs,tabularx}\n"
        "\\begin{document}\n\\input{board.tex}\n\\end{document}\n")
    out = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", "doc.tex"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert out.returncode == 0, log[-3000:]
    assert "PLANTED-INPUT-RAN" not in log and "(./planted.tex" not in log
