"""Component states and the transitions allowed between them. Imports nothing from msgsrv."""

from enum import StrEnum


class State(StrEnum):
    STOPPED = "STOPPED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    BACKOFF = "BACKOFF"  # failed; a restart of its unit is queued
    STOPPING = "STOPPING"
    FATAL = "FATAL"  # failed and given up on (restart budget spent, or it could not start)


S = State
TRANSITIONS: dict[State, frozenset[State]] = {
    S.STOPPED: frozenset({S.STARTING, S.RUNNING, S.FATAL}),  # RUNNING: re-adopted from a pid file
    S.STARTING: frozenset({S.RUNNING, S.FATAL, S.STOPPING, S.STOPPED, S.BACKOFF}),
    S.RUNNING: frozenset({S.STOPPING, S.BACKOFF, S.STOPPED, S.FATAL}),
    S.BACKOFF: frozenset({S.STOPPING, S.STARTING, S.STOPPED, S.FATAL}),
    S.STOPPING: frozenset({S.STOPPED, S.FATAL}),
    S.FATAL: frozenset({S.STARTING, S.STOPPING, S.STOPPED}),
}


def allowed(old: State, new: State) -> bool:
    return old == new or new in TRANSITIONS[old]
