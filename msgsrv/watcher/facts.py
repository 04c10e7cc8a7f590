"""The facts the supervisor keeps, as plain records: what is known about each component, and each
restart it has granted. The supervisor changes them (through its one door for states); operations,
adoption, reports and the status view read them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from msgsrv.watcher import children as ch
from msgsrv.watcher.states import State


@dataclass(eq=False)
class Comp:
    """What is known about one component."""

    name: str
    state: State = State.STOPPED
    procs: list[ch.Child] = field(default_factory=list)  # live processes (exits remove them)
    wanted: bool = False  # meant to run: started, and not stopped by request since
    down_state: State = State.STOPPED  # the state it takes when it has no process
    since: float = field(default_factory=time.time)  # when it entered its state
    since_mono: float = field(default_factory=time.monotonic)  # the same on a clock no step moves
    reason: str | None = None  # why it is BACKOFF/EXITED/FATAL
    last_exit: dict | None = None  # {"pid", "status", "how", "time"} of its last unexpected exit
    start_pending: bool = False  # wanted by a start that has not spawned it yet (saved: a watcher
    #                              that dies meanwhile leaves a start to finish, not a failure)


@dataclass(eq=False)
class Restart:
    """A granted restart of one unit, queued or under way."""

    unit: str
    members: set[str]
    cause: str
    by: str | None = None
    hung: set[str] = field(default_factory=set)  # members reported hung: short stop grace
    started: set[str] = field(default_factory=set)  # members this restart has (re)started so far
    begun: bool = False
    delay: float = 0.0
    deferred: bool = False  # waiting for config/msg.toml to parse again (built-in servers read it)
