"""When validation figures are drawn: every n epochs, or within a share of the run's time."""

from __future__ import annotations

from mrinet.callbacks.figures import FigureSchedule


def test_every_n_epochs_draws_epoch_zero_the_multiples_and_the_last():
    schedule = FigureSchedule(every_n_epochs=2)
    assert [schedule.now(e, 4) for e in range(5)] == [True, False, True, False, True]
    schedule = FigureSchedule(every_n_epochs=3)
    assert [schedule.now(e, 4) for e in range(5)] == [True, False, False, True, True]


def test_the_budget_draws_when_the_figures_stay_within_their_share():
    schedule = FigureSchedule(every_n_epochs=None, share=0.05)
    assert schedule.now(0, 9)  # the first epoch always draws
    schedule.running = 2.0  # that epoch's figures took 2 s (what `timed` adds up)
    schedule.spent = 2.0
    schedule.t0 -= 50.0  # 50 s into training: 5 % is 2.5 s < 2 s spent + 2 s expected
    assert not schedule.now(1, 9)
    assert schedule.cost == 2.0 and schedule.running == 0.0
    schedule.t0 -= 50.0  # 100 s: 5 % is 5 s >= 4 s
    assert schedule.now(2, 9)
    assert schedule.now(2, 9)  # one answer per epoch, whichever figure asks
    schedule.running = schedule.spent = 0.0
    assert schedule.now(9, 9)  # the last epoch always draws


def test_timed_counts_the_drawing_time():
    schedule = FigureSchedule()
    with schedule.timed():
        sum(range(1000))
    assert schedule.spent > 0 and schedule.running == schedule.spent
