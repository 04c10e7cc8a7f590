from msgsrv.watcher.states import GIVEN_UP, TRANSITIONS, WITH_PROCESSES, State, allowed


def test_every_state_has_a_row():
    assert set(TRANSITIONS) == set(State)


def test_running_to_backoff_on_failure_and_back_through_starting():
    assert allowed(State.RUNNING, State.BACKOFF)
    assert allowed(State.BACKOFF, State.STARTING)
    assert allowed(State.STARTING, State.RUNNING)


def test_a_restart_stops_running_members_into_backoff():
    assert allowed(State.RUNNING, State.STOPPING)
    assert allowed(State.STOPPING, State.BACKOFF)


def test_stopping_cannot_jump_to_running():
    assert not allowed(State.STOPPING, State.RUNNING)
    assert not allowed(State.STOPPED, State.STOPPING)


def test_states_without_processes_cannot_be_stopped_through_stopping():
    for s in (State.BACKOFF, State.EXITED):
        assert not allowed(s, State.STOPPING) and s not in WITH_PROCESSES


def test_given_up_states_can_be_started_or_stopped_again():
    for s in GIVEN_UP:
        assert allowed(s, State.STARTING) and allowed(s, State.STOPPED)
    assert allowed(State.FATAL, State.STOPPING)  # a hung process msprobe reported, given up on
