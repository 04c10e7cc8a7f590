"""A bug in an operation (an exception of no kind the suite raises) must not hide the failure it
was healing: the watcher says it, and what is meant to run but has no process is FATAL."""

from __future__ import annotations

import asyncio

from msgsrv.watcher import operations as ops
from msgsrv.watcher.journal import read as journal
from msgsrv.watcher.states import State
from tests.unit.watcher.test_model import FakeProcesses, SupervisorModel


class Exploding(FakeProcesses):
    """A spawn that raises what no spawn should (a bug), for the components in `explode`."""

    def __init__(self, loop):
        super().__init__(loop)
        self.explode: set[str] = set()

    def spawn(self, component, argv, env, log_path, worker=0, fork=False):
        if component in self.explode:
            raise RuntimeError("boom")
        return super().spawn(component, argv, env, log_path, worker, fork)


def test_a_restart_that_crashes_leaves_its_components_fatal_and_says_why():
    m = SupervisorModel()
    try:
        m.procs.__class__ = Exploding
        m.procs.explode = set()
        m.start(["store", "imap", "pop", "http"])
        assert all(m.sup.comps[c].state is State.RUNNING for c in ("store", "imap", "pop", "http"))
        m.procs.explode = {"imap"}
        m.inloop(lambda: m.procs.crash(m.sup.comps["imap"].procs[0].pid))
        m.settle()
        comps = m.sup.comps
        assert comps["store"].state is State.RUNNING
        for c in ("imap", "pop", "http"):  # before: STOPPED and wanted, nothing said, nothing to heal them
            assert comps[c].state is State.FATAL and "internal error in restart store: RuntimeError: boom" in comps[c].reason
        log = m.root.watcher_log.read_text()
        assert "internal error in restart store: RuntimeError: boom; what it left down is FATAL (watcher status)" in log
        assert [r["component"] for r in journal(m.root) if r["kind"] == "give-up"] == ["imap", "pop", "http"]
        # the queue goes on: a later start works
        m.procs.explode = set()
        m.start(["imap", "pop", "http"])
        assert all(comps[c].state is State.RUNNING for c in ("store", "imap", "pop", "http"))
    finally:
        m.teardown()


def test_the_queue_reports_a_crash_once_and_only_a_bug():
    seen = []

    async def go():
        q = ops.OperationQueue(on_crash=lambda label, e: seen.append((label, type(e).__name__)))
        worker = asyncio.get_running_loop().create_task(q.run())

        async def bug():
            raise KeyError("x")

        async def refused():
            from msgsrv.errors import OperationFailed

            raise OperationFailed("imap: exited with status 3")

        async def fine():
            return 7

        futs = [q.submit(bug, "restart store"), q.submit(refused, "start"), q.submit(fine, "start")]
        await asyncio.wait(futs)
        worker.cancel()
        return [f.exception() is not None for f in futs], futs[2].result()

    assert asyncio.run(go()) == ([True, True, False], 7)
    assert seen == [("restart store", "KeyError")]
