from msgsrv.watcher.states import TRANSITIONS, State, allowed


def test_every_state_has_a_row():
    assert set(TRANSITIONS) == set(State)


def test_running_to_backoff_on_failure_and_back_through_stopping():
    assert allowed(State.RUNNING, State.BACKOFF)
    assert allowed(State.BACKOFF, State.STOPPING)
    assert allowed(State.STOPPING, State.STOPPED)
    assert allowed(State.STOPPED, State.STARTING)


def test_stopping_cannot_jump_to_running():
    assert not allowed(State.STOPPING, State.RUNNING)
    assert not allowed(State.STOPPED, State.STOPPING)
