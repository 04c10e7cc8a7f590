"""Component states and the transitions allowed between them (SPEC §4 "States").

Imports nothing from msgsrv. A state is derived from facts the supervisor records (a process was
spawned, registered, exited; a restart was granted or refused); `Supervisor._enter` is the only
door through which it changes, and it checks this table.

    STOPPED   stopped by request, or never started                     no process
    STARTING  spawned, waiting for its readiness check                 names its processes
    RUNNING   a live process that passed its readiness check           names its processes (never none)
    BACKOFF   failed; a restart of its unit is queued or under way     no process
    STOPPING  asked to stop, waiting for its processes to exit         names its processes
    EXITED    died and is not being restarted (autorestart no, ens,    no process
              or it exited after saying BYE)
    FATAL     given up on: restart budget spent, or it could not start  no process, except a hung
              and is not restarted                                       process msprobe reported
                                                                         (stopping it is HA mode's job)
"""

from enum import StrEnum


class State(StrEnum):
    STOPPED = "STOPPED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    BACKOFF = "BACKOFF"
    STOPPING = "STOPPING"
    EXITED = "EXITED"
    FATAL = "FATAL"


S = State
TRANSITIONS: dict[State, frozenset[State]] = {
    # RUNNING: re-adopted from a pid file; BACKOFF/EXITED/FATAL: adoption found it dead (or restored)
    S.STOPPED: frozenset({S.STARTING, S.RUNNING, S.BACKOFF, S.EXITED, S.FATAL}),
    S.STARTING: frozenset({S.RUNNING, S.BACKOFF, S.STOPPING, S.STOPPED, S.EXITED, S.FATAL}),
    S.RUNNING: frozenset({S.STOPPING, S.BACKOFF, S.EXITED, S.FATAL}),
    S.BACKOFF: frozenset({S.STARTING, S.STOPPED, S.EXITED, S.FATAL}),
    S.STOPPING: frozenset({S.STOPPED, S.BACKOFF, S.EXITED, S.FATAL}),
    S.EXITED: frozenset({S.STARTING, S.STOPPED, S.BACKOFF, S.FATAL}),
    S.FATAL: frozenset({S.STARTING, S.STOPPING, S.STOPPED, S.BACKOFF, S.EXITED}),
}

# States that may name live processes; RUNNING must name at least one.
WITH_PROCESSES = frozenset({S.STARTING, S.RUNNING, S.STOPPING, S.FATAL})
# A failure that is not being handled any more: shown with the exit status and time.
GIVEN_UP = frozenset({S.EXITED, S.FATAL})


def allowed(old: State, new: State) -> bool:
    return old == new or new in TRANSITIONS[old]
