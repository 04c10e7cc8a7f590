"""msgsrv/services/dispatcher.py's own parsing: read_data (the DATA reader agrees with RFC 5321
§4.5.2 and leaves what follows the message, a pipelined command, unread) and the fast path for
MAIL/RCPT paths (it agrees with aiosmtpd's parser)."""

from __future__ import annotations

import asyncio

import pytest

from msgsrv.services.dispatcher import read_data

LIMIT = 1001  # aiosmtpd's StreamReader limit (one line of RFC 5321 §4.5.3.1.6)


def run(wire: bytes, size_limit: int = 10_000_000, chunks: int = 1) -> tuple[bytes, str, bytes]:
    async def go():
        reader = asyncio.StreamReader(limit=LIMIT)
        step = max(1, len(wire) // chunks)

        async def feed():
            for i in range(0, len(wire), step):
                reader.feed_data(wire[i:i + step])
                await asyncio.sleep(0)
            reader.feed_eof()

        feeder = asyncio.ensure_future(feed())
        content, problem = await read_data(reader, size_limit, LIMIT)
        await feeder
        return content, problem, await reader.read()

    return asyncio.run(go())


@pytest.mark.parametrize("chunks", [1, 7, 1000])
@pytest.mark.parametrize("message", [
    b"",
    b"one line\r\n",
    b"Subject: x\r\n\r\n" + (b"y" * 76 + b"\r\n") * 500,
    b"..leading dot\r\nmiddle\r\n...three\r\nends with a dot.\r\n.\r\n".replace(b"\r\n.\r\n", b"\r\n..\r\n"),
    b"sentence one.\r\nsentence two.\r\n",
])
def test_message_is_read_up_to_the_terminator_and_unstuffed(message, chunks):
    stuffed = (b"\r\n" + message).replace(b"\r\n.", b"\r\n..")[2:]
    content, problem, rest = run(stuffed + b".\r\nQUIT\r\n", chunks=chunks)
    assert (content, problem, rest) == (message, "", b"QUIT\r\n")


def test_a_dot_inside_a_line_is_not_the_end():
    content, problem, rest = run(b"a.\r\nb\r\n.\r\n")
    assert content == b"a.\r\nb\r\n" and rest == b""


def test_over_the_size_limit_is_read_to_the_end_and_refused():
    big = (b"z" * 98 + b"\r\n") * 300
    content, problem, rest = run(big + b".\r\nNOOP\r\n", size_limit=10_000, chunks=50)
    assert content == b"" and problem.startswith("552 5.3.4") and rest == b"NOOP\r\n"


def test_a_line_over_1000_octets_is_refused():
    content, problem, rest = run(b"ok\r\n" + b"w" * 1200 + b"\r\n.\r\nNOOP\r\n")
    assert problem.startswith("500 5.5.2 Line too long") and rest == b"NOOP\r\n"


@pytest.mark.parametrize("arg", [
    "<alice@example.org>", "<alice@example.org> SIZE=100", "<> SIZE=1", "<>", " <a.b+c@x.y>  BODY=8BITMIME",
    "<bob@example.org>SIZE=1", "<a@b> ", "<A@B.ORG>", "<a..b@x>", "<.a@x>", "<a@x.>", "<a@[1.2.3.4]>",
    '<"q x"@y>', "<alice>", "alice@example.org", "<a@b", "<a b@c>", "<jörg@example.org>",
])
def test_the_fast_path_parser_agrees_with_aiosmtpd(arg):
    """The dispatcher's plain-path matcher gives what aiosmtpd's own parser gives (parameters compared
    as aiosmtpd uses them: split on white space)."""
    from aiosmtpd.smtp import SMTP

    from msgsrv.services.dispatcher import protocol_class

    class Handler:
        pass

    ours = protocol_class(SMTP)(Handler())._getaddr(arg)
    theirs = SMTP(Handler())._getaddr(arg)
    assert (ours[0], (ours[1] or "").split()) == (theirs[0], (theirs[1] or "").split())
