"""THE component table: name, start order, enable switch, restart unit, ports, probe, dependencies.

Start order is SPEC §2 (watcher, ens, store, imap, pop, http, sched, dispatcher, job_controller,
mmp) with cert placed after pop as in the 6.3 usage list; stop order is the reverse, watcher last.

The watcher "is aware of any dependencies the other services have" (the manuals): `after` names
what a component needs started before it (the store, with its status check, before its clients;
ens, to which it publishes, before the dispatcher; everything the scheduler probes before it; imap
and pop before mmp; ens, store and cert need nothing, so they start at once). A start
of several components runs the ones that do not wait for each other together, and shows their
lines in start order all the same (operations.op_start).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Component:
    name: str
    daemon: str  # process name in logs ("Watched 'imapd' process ...")
    enable: str  # boolean parameter that switches it on
    ports: tuple[tuple[str, str], ...] = ()  # (label, port parameter)
    unit: str | None = None  # restart unit; None = never restarted automatically
    workers: str | None = None  # integer parameter: number of worker processes
    probes: tuple[str, ...] = ()  # msprobe service names served by this component
    extra: dict = field(default_factory=dict)
    after: tuple[str, ...] = ()  # started once these (when they start too) have been started


STORE_GROUP = ("store", "imap", "pop", "http")

COMPONENTS: tuple[Component, ...] = (
    Component("ens", "enpd", "local.ens.enable", (("ens", "local.ens.port"),), None,
              probes=("ens",)),
    Component("store", "stored", "local.store.enable", (("store", "local.store.port"),), "store",
              probes=("store",)),
    Component("imap", "imapd", "service.imap.enable",
              (("imap", "service.imap.port"), ("imaps", "service.imap.sslport")), "store",
              workers="service.imap.numprocesses", probes=("imap", "imaps"), after=("store",)),
    Component("pop", "popd", "service.pop.enable", (("pop", "service.pop.port"), ("pops", "service.pop.sslport")),
              "store", workers="service.pop.numprocesses", probes=("pop", "pops"), after=("store",)),
    Component("cert", "certd", "local.cert.enable", (("cert", "local.cert.port"),), "cert",
              probes=("cert",)),
    Component("http", "mshttpd", "service.http.enable",
              (("http", "service.http.port"), ("https", "service.http.sslport")), "store",
              workers="service.http.numprocesses", probes=("http", "https"), after=("store",)),
    Component("sched", "imsched", "local.sched.enable", (("sched", "local.sched.port"),), "sched",
              probes=("sched",), after=("ens", "store", "imap", "pop", "cert", "http")),
    Component("dispatcher", "dispatcher", "local.imta.enable",
              (("smtp", "service.smtp.port"), ("lmtp", "service.lmtp.port"), ("smtps", "service.smtp.sslport")),
              "dispatcher", probes=("smtp", "lmtp", "smtps"), after=("ens", "store")),
    Component("job_controller", "job_controller", "local.imta.enable",
              (("job_controller", "local.job_controller.port"),), "job_controller",
              probes=("job_controller",), after=("store",)),
    Component("mmp", "mmp", "local.mmp.enable",
              (("mmp", "local.mmp.imapport"), ("mmppop", "local.mmp.popport")), "mmp",
              probes=("mmp",), after=("imap", "pop")),
)

BY_NAME: dict[str, Component] = {c.name: c for c in COMPONENTS}

# Port labels that a boolean parameter switches off (the implicit-TLS listeners); every other port is
# always served by its component.
PORT_SWITCHES: dict[str, str] = {
    "imaps": "service.imap.enablesslport",
    "pops": "service.pop.enablesslport",
    "https": "service.http.enablesslport",
    "smtps": "service.smtp.enablesslport",
}
START_ORDER: tuple[str, ...] = tuple(c.name for c in COMPONENTS)
STOP_ORDER: tuple[str, ...] = tuple(reversed(START_ORDER))

# Names a user may type on the command line, and what they mean.
ALIASES: dict[str, tuple[str, ...]] = {
    "smtp": ("dispatcher",),
    "lmtp": ("dispatcher",),
    "mta": ("dispatcher", "job_controller"),
}

# msprobe service name -> (component, port parameter)
PROBE_TARGETS: dict[str, tuple[str, str]] = {}
for _c in COMPONENTS:
    for _label, _param in _c.ports:
        if _label in _c.probes:
            PROBE_TARGETS[_label] = (_c.name, _param)
PROBE_SERVICES: tuple[str, ...] = tuple(PROBE_TARGETS)


def resolve(names: list[str] | tuple[str, ...]) -> list[str]:
    """Command-line names -> component names in start order; raises KeyError(name) if unknown."""
    wanted: set[str] = set()
    for n in names:
        if n in BY_NAME:
            wanted.add(n)
        elif n in ALIASES:
            wanted.update(ALIASES[n])
        else:
            raise KeyError(n)
    return [c for c in START_ORDER if c in wanted]


def unit_members(unit: str, enabled: list[str] | tuple[str, ...]) -> list[str]:
    """Components of restart unit UNIT among ENABLED, in start order."""
    return [c.name for c in COMPONENTS if c.unit == unit and c.name in enabled]


def known_names() -> list[str]:
    return list(START_ORDER) + list(ALIASES)
