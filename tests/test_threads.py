"""The thread governor: torch's CPU threads follow the cores the other processes leave free."""

from __future__ import annotations

import pytest
import torch

from circuitgnn import threads
from circuitgnn.errors import ConfigError


class _Clock:
    """Wall time, this process's CPU time and the machine's busy time, advanced by hand."""

    def __init__(self):
        self.wall = self.own = self.busy = 0.0

    def perf_counter(self) -> float:
        return self.wall

    def process_time(self) -> float:
        return self.own

    def time(self) -> float:
        return self.wall

    def run(self, seconds: float, own_cores: float, other_cores: float) -> None:
        self.wall += seconds
        self.own += seconds * own_cores
        self.busy += seconds * (own_cores + other_cores)


@pytest.fixture
def clock(monkeypatch):
    c = _Clock()
    monkeypatch.setattr(threads, "time", c)
    monkeypatch.setattr(threads, "_busy_seconds", lambda: c.busy)
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    monkeypatch.setattr(threads, "_TORCH_DEFAULT", 4)
    monkeypatch.setattr(threads, "_last_set", None)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("CIRCUITGNN_THREADS", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    yield c
    torch.set_num_threads(before)


def test_threads_follow_the_cores_other_jobs_leave_free(clock):
    governor = threads.ThreadGovernor(torch.device("cpu"), interval=2.0)
    assert governor.enabled
    clock.run(1.0, own_cores=4, other_cores=3)
    assert governor.update() == 4  # not yet: one measurement per interval
    clock.run(1.5, own_cores=4, other_cores=3)
    assert governor.update() == 1 == torch.get_num_threads()  # three cores busy elsewhere: one thread
    clock.run(2.5, own_cores=1, other_cores=1.2)
    assert governor.update() == 3  # the others went down to about one core
    clock.run(2.5, own_cores=3, other_cores=0.05)
    assert governor.update() == 4  # alone: every core
    assert [n for _, n in governor.changes] == [1, 3, 4]
    clock.run(2.5, own_cores=4, other_cores=2)
    assert governor.update() == 2
    assert threads.ThreadGovernor(torch.device("cpu")).enabled  # a count a governor set is not the user's choice
    governor.restore()
    assert torch.get_num_threads() == 4  # the count found at the start


def test_the_users_choice_is_kept(clock, monkeypatch):
    torch.set_num_threads(2)  # set by the user (not by a governor)
    assert not threads.ThreadGovernor(torch.device("cpu")).enabled
    torch.set_num_threads(4)
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    assert not threads.ThreadGovernor(torch.device("cpu")).enabled
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setenv("CIRCUITGNN_THREADS", "3")
    governor = threads.ThreadGovernor(torch.device("cpu"))
    assert not governor.enabled and torch.get_num_threads() == 3
    assert not threads.ThreadGovernor(torch.device("meta")).enabled  # not a CPU


@pytest.mark.parametrize("value", ["0", "two", "-1", "1.5"])
def test_bad_thread_counts_are_refused_with_the_variable_named(monkeypatch, value):
    monkeypatch.setenv("CIRCUITGNN_THREADS", value)
    with pytest.raises(ConfigError, match="CIRCUITGNN_THREADS must be 'auto' or a whole number"):
        threads.requested_threads()


def test_busy_time_counts_only_the_cpus_this_process_may_use(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    stat.write_text("cpu  60 0 40 900 0 0 0 0 0 0\ncpu0 10 0 10 480 0 0 0 0 0 0\ncpu1 50 0 30 420 0 0 0 0 0 0\nintr 1 2\n")
    monkeypatch.setattr(threads, "_STAT", stat)
    monkeypatch.setattr(threads, "_affinity", lambda: {1})
    assert threads._busy_seconds() == pytest.approx(80 / threads.os.sysconf("SC_CLK_TCK"))  # cpu1 only
    monkeypatch.setattr(threads, "_affinity", lambda: None)
    assert threads._busy_seconds() == pytest.approx(100 / threads.os.sysconf("SC_CLK_TCK"))
    monkeypatch.setattr(threads, "_STAT", tmp_path / "absent")
    assert threads._busy_seconds() is None and not threads.ThreadGovernor(torch.device("cpu")).enabled
