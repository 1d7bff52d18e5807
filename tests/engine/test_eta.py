"""Time left of a task of several runs, as the CLI and the Curation tab show it."""
from balancelab.engine.core.eta import RunsEta, clock_text


def test_time_left_follows_the_pace_of_the_finished_runs():
    now = [0.0]
    eta = RunsEta(clock=lambda: now[0])
    now[0] = 100.0  # the scan and decoding before the first run (100 s) do not count
    eta.begin()
    assert eta.left(4) is None  # no run has ended: no figure rather than a guess
    now[0] = 160.0
    eta.run_finished(0)
    assert eta.left(4) == 180.0  # 60 s per run, 3 runs to go
    now[0] = 200.0
    eta.run_finished(1)
    assert eta.left(4) == 100.0 and eta.left(2) == 0.0
    eta.run_finished(0)  # a late event of an earlier run does not move the count back
    assert eta.done == 2


def test_clock_text():
    assert [clock_text(s) for s in (0, 5.4, 65, 3600 + 62, -3)] == ["00:00", "00:05", "01:05", "1:01:02", "00:00"]
