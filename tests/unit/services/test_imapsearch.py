"""msgsrv/services/imapsearch.py: the SEARCH program as a predicate over lazily loaded messages."""

from __future__ import annotations

import calendar

import pytest

from msgsrv.services.imapsearch import Candidate, compile_search
from msgsrv.services.imapsyntax import Str, SyntaxProblem, tokenize

MESSAGES = [
    (b"From: Ann Example <ann@example.org>\r\nTo: bob@example.org\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
     b"Date: Mon, 1 Jan 2024 23:30:00 -0500\r\nX-Tag: blue\r\n\r\nHello world\r\n",
     frozenset({"\\Seen", "$Work"}), calendar.timegm((2024, 1, 2, 12, 0, 0))),
    (b"From: <carol (the boss)@ example.net>\r\nSubject: report\r\nContent-Type: text/plain; charset=utf-8\r\n"
     b"Content-Transfer-Encoding: base64\r\n\r\nU2Now7ZuZXMgV2V0dGVy\r\n",
     frozenset({"\\Recent", "\\Flagged"}), calendar.timegm((2024, 3, 5, 12, 0, 0))),
]


def run(program: str, loaded: list | None = None) -> list[int]:
    pred = compile_search(tokenize(program), len(MESSAGES), 20)
    out = []
    for seq, (data, flags, date) in enumerate(MESSAGES, 1):
        def load(data=data, seq=seq):
            if loaded is not None:
                loaded.append(seq)
            return data
        if pred(Candidate(seq, seq * 10, flags, len(data), lambda d=date: d, load)):
            out.append(seq)
    return out


@pytest.mark.parametrize("program,hits", [
    ("ALL", [1, 2]), ("SEEN", [1]), ("UNSEEN", [2]), ("NEW", [2]), ("OLD", [1]), ("RECENT", [2]),
    ("FLAGGED UNSEEN", [2]), ("KEYWORD $work", [1]), ("UNKEYWORD $Work", [2]),
    ("NOT SEEN", [2]), ("OR SEEN FLAGGED", [1, 2]), ("(SEEN) (KEYWORD $Work)", [1]),
    ("UID 20", [2]), ("UID 1:15", [1]), ("2", [2]), ("*", [2]), ("1:*", [1, 2]),
    ("LARGER 150", [1, 2]), ("SMALLER 10", []),
    ("FROM ann@example", [1]), ("FROM carol@example.net", [2]), ("FROM BOSS", [2]), ("TO bob", [1]),
    ("SUBJECT grüße", [1]), ("SUBJECT REPORT", [2]), ('HEADER X-Tag ""', [1]), ("HEADER x-tag BLUE", [1]),
    ("BODY wetter", [2]), ("BODY hello", [1]), ("TEXT report", [2]), ("TEXT hello", [1]),
    ("SINCE 2-Jan-2024", [1, 2]), ("BEFORE 2-Jan-2024", []), ("ON 5-Mar-2024", [2]),
    ("SENTON 1-Jan-2024", [1]), ("SENTBEFORE 1-Jan-2024", []), ("SENTSINCE 1-Jan-2024", [1]),
])
def test_search_keys(program, hits):
    assert run(program) == hits


def test_flag_keys_never_read_the_message():
    loaded: list[int] = []
    assert run("OR FLAGGED UID 10", loaded) == [1, 2]
    assert loaded == []


@pytest.mark.parametrize("program", ["", "FROM", "BOGUS", "BEFORE 32-Jan-2024", "LARGER x", "UID 0", "NOT"])
def test_malformed_programs(program):
    with pytest.raises(SyntaxProblem):
        compile_search(tokenize(program), 2, 20)


def test_a_literal_string_is_a_string_even_when_it_looks_like_a_key():
    s = Str("ALL")
    with pytest.raises(SyntaxProblem):
        compile_search([s], 2, 20)
