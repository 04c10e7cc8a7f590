"""The watcher's web console (issue 15, SPEC §4 "Console"): the supervised tree, response-time plots,
timeline, log tails and actions in a browser, plus the JSON API under /api/ (man/msgsrv-console.8).

    server.py   the listener in the watcher's loop (daemon.py starts and stops it)
    app.py      the aiohttp application: routes, security headers, login, refusals
    views.py    what each page and API endpoint shows or does
    backend.py  the one door to the Supervisor
    auth.py actions.py reader.py history.py logtail.py plots.py link.py text.py
"""
