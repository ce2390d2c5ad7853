"""`e2ad up`'s catch-up lines: what waits for each stage, and the time left at the writers' pace."""

from __future__ import annotations

from harness.embedded import Progress, progress_line


def test_a_catch_up_says_what_waits_where_and_how_long_it_will_take() -> None:
    before = Progress(changes=12_000, consumed_changes=9_000, desired=8_000, applied=1_000)
    now = Progress(changes=12_000, consumed_changes=12_000, desired=10_000, applied=1_500)
    assert progress_line(before, now, 5.0) == (
        "catching up: 12000 changes read from Graph (0 waiting for the processors), 10000 desired states "
        "published, 1500 applied in AD (8500 waiting), about 85 s left at 100 a second"
    )


def test_no_time_left_is_guessed_before_the_writers_moved() -> None:
    at_start = Progress(changes=500, consumed_changes=0, desired=0, applied=0)
    line = progress_line(at_start, at_start, 5.0)
    assert line is not None and line.endswith("0 applied in AD (0 waiting)"), line


def test_a_caught_up_pipeline_says_nothing() -> None:
    done = Progress(changes=12_000, consumed_changes=12_000, desired=10_000, applied=10_000)
    assert progress_line(done, done, 5.0) is None
