"""The progress bar of the CLI, the demo and the benchmark: drawn only for a person at a terminal."""

from __future__ import annotations

import io

from exporter.local.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_sees_the_label_and_the_count_out_of_the_total():
    screen = Terminal()
    with Progress("exporting windows", total=3, stream=screen) as progress:
        for _ in range(3):
            progress.advance()
    assert progress.done == 3
    drawn = screen.getvalue()
    assert "exporting windows" in drawn and "3/3" in drawn
    assert drawn.endswith("\n"), "the bar is left on its own line, not under the JSON answer"


def test_without_a_total_the_count_alone_is_shown():
    screen = Terminal()
    with Progress("loading segments", stream=screen) as progress:
        progress.advance(5)
    assert "loading segments" in screen.getvalue() and "5" in screen.getvalue()


def test_a_pipe_or_file_gets_nothing_so_json_output_stays_clean():
    piped = io.StringIO()
    with Progress("simulating hours", total=2, stream=piped) as progress:
        progress.advance(2)
    assert progress.done == 2
    assert piped.getvalue() == ""
