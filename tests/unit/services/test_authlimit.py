"""msgsrv/services/authlimit.py: failed logins cost a growing delay per source address."""

from msgsrv.services.authlimit import MAX_DELAY, LoginThrottle


def test_delay_doubles_per_failure_and_is_capped():
    t = LoginThrottle(base=0.5, cap=MAX_DELAY)
    delays = [t.failed("10.0.0.1", now=float(i)) for i in range(8)]
    assert delays[:5] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert max(delays) == MAX_DELAY


def test_addresses_are_counted_apart_and_success_forgets():
    t = LoginThrottle()
    t.failed("a", now=0)
    t.failed("a", now=1)
    assert t.failed("b", now=2) == 0.5
    t.succeeded("a")
    assert t.failures("a", now=3) == 0
    assert t.failed("a", now=3) == 0.5


def test_old_failures_are_forgotten():
    t = LoginThrottle()
    for i in range(5):
        t.failed("a", now=float(i))
    assert t.failed("a", now=10_000.0) == 0.5


def test_failure_log_writes_limit_lines_per_window_then_counts_the_rest():
    from msgsrv.services.authlimit import FailureLog

    log = FailureLog(limit=3, window=60.0)
    assert [log.admit(now=float(i)) for i in range(6)] == [0, 0, 0, None, None, None]
    assert log.admit(now=60.0) == 3  # a new window: the first line says how many were left out
    assert log.admit(now=61.0) == 0


def test_enhanced_status_codes_are_added_where_missing():
    from msgsrv.services.dispatcher import with_enhanced_code

    assert with_enhanced_code("250 OK", "MAIL") == "250 2.1.0 OK"
    assert with_enhanced_code("250 OK", "RCPT") == "250 2.1.5 OK"
    assert with_enhanced_code("250 OK", "RSET") == "250 2.0.0 OK"
    assert with_enhanced_code("503 Error: need MAIL command", "RCPT") == "503 5.5.1 Error: need MAIL command"
    assert with_enhanced_code("599 odd", "X") == "599 5.0.0 odd"
    assert with_enhanced_code("535 5.7.8 Authentication credentials invalid", "AUTH").count("5.7.8") == 1
    assert with_enhanced_code("354 End data with <CR><LF>.<CR><LF>", "DATA").startswith("354 End")  # 3xx: none
    assert with_enhanced_code("334 ", "AUTH") == "334 "
