"""msgsrv/probe/alarms.py: the mail text and the rate limit, pure."""

from msgsrv.probe.alarms import Alarm, due, render

A = Alarm("serverresponse", "imap_host_10143", "server response time in seconds", 10.0, 10, 1, 0.0, 10.0, 600,
          when=0.0)


def test_default_template_renders_the_original_format():
    headers, body = render(A, "postmaster@siroe.com", "postmaster@siroe.com", "/opt/msg", times_over=1)
    assert headers == {"From": "postmaster@siroe.com", "To": "postmaster@siroe.com",
                       "Subject": 'ALARM: server response time in seconds of "imap_host_10143" is 10'}
    lines = body.splitlines()
    assert lines[:4] == ["Server instance: /opt/msg", "Alarmid: serverresponse", "Instance: imap_host_10143",
                         "Description: server response time in seconds"]
    assert lines[4].startswith("Current measured value (") and lines[4].endswith("): 10")
    assert lines[5:] == ["Lowest recorded value: 0", "Highest recorded value: 10", "Monitoring interval: 600 seconds",
                         "Alarm condition is when over threshold of 10", "Number of times over threshold: 1"]


def test_custom_template_fills_placeholders_in_order():
    headers, body = render(A, "s@x", "r@x", "/b", 2, template="Subject: %s/%s/%s/%s/%s\\n\\nbody")
    assert headers == {"Subject": "s@x/r@x/server response time in seconds/imap_host_10143/10"}
    assert body == "body"


def test_rate_limit_per_warning_interval():
    assert due(None, 1000.0, 24)
    assert not due(1000.0, 1000.0 + 23 * 3600, 24)
    assert due(1000.0, 1000.0 + 24 * 3600, 24)
    assert not due(1000.0, 1000.0 - 30, 24)  # a few seconds' correction: still within the interval
    assert due(1000.0 + 3600, 1000.0, 24)  # the clock went back an hour since the last mail
