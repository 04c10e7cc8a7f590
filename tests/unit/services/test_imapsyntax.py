"""msgsrv/services/imapsyntax.py: tokens, lazy sequence sets, LIST patterns, modified UTF-7."""

from __future__ import annotations

import pytest

from msgsrv.services.imapsyntax import (
    MAX_NUMBER,
    ListPattern,
    SequenceSet,
    Str,
    SyntaxProblem,
    astring_out,
    compact_set,
    tokenize,
    valid_mutf7,
)


def test_tokens_keep_fetch_sections_whole_and_tell_strings_from_atoms():
    toks = tokenize('1:* (UID BODY.PEEK[HEADER.FIELDS (From "To")]<0.100>) "a \\"q\\"" \0' + "0\0", [b"lit\r\n"])
    assert toks[0] == "1:*"
    assert toks[1] == ["UID", 'BODY.PEEK[HEADER.FIELDS (From "To")]<0.100>']
    assert isinstance(toks[2], Str) and toks[2] == 'a "q"'
    assert isinstance(toks[3], Str) and toks[3].raw == b"lit\r\n"
    assert not isinstance(toks[0], Str)


def test_an_atom_with_an_unbalanced_bracket_is_a_plain_atom():
    assert tokenize("LIST \"\" x[}%*") == ["LIST", "", "x[}%*"]


@pytest.mark.parametrize("text", ['"open', "(a", "a)", '"bad \\x escape"', "a{b"])
def test_malformed_arguments_are_syntax_problems(text):
    with pytest.raises(SyntaxProblem):
        tokenize(text)


def test_deep_nesting_is_refused():
    with pytest.raises(SyntaxProblem, match="nested"):
        tokenize("(" * 100 + ")" * 100)


def test_sequence_sets_stay_ranges_whatever_they_name():
    s = SequenceSet(",".join(f"{i * 10_000_000 + 1}:{(i + 1) * 10_000_000}" for i in range(400)))
    assert s.ranges(5) == [(1, 4_000_000_000)]  # merged, never expanded
    uids = [3, 17, 4_000_000_000, MAX_NUMBER]
    assert list(s.select(uids, uids[-1])) == [0, 1, 2]
    assert s.contains(17, 0) and not s.contains(MAX_NUMBER, 0)


def test_star_is_the_largest_value_and_ranges_may_run_backwards():
    s = SequenceSet("*:3,1")
    assert s.has_star and s.ranges(5) == [(1, 1), (3, 5)]
    assert SequenceSet("4:2").ranges(9) == [(2, 4)]


@pytest.mark.parametrize("text", ["", "0", "1:0", "a", "1,,2", "4294967296", "01", "1:2:3"])
def test_invalid_sequence_sets(text):
    with pytest.raises(SyntaxProblem):
        SequenceSet(text)


def test_compact_set_for_uidplus_codes():
    assert compact_set([1, 2, 3, 7, 9, 10]) == "1:3,7,9:10"


@pytest.mark.parametrize("pattern,name,hit", [
    ("*", "a.b.c", True), ("%", "a.b", False), ("a.%", "a.b", True), ("a.%", "a.b.c", False),
    ("a.*", "a.b.c", True), ("a.%.%", "a.b.c", True), ("a.*c4", "a.x.c4", True), ("a.%t*4", "a.test3.test4", True),
    ("INBOX", "INBOX", True), ("IN%X", "INBOX", True), ("a", "ab", False), ("%%*%", "x.y", True),
])
def test_list_wildcards(pattern, name, hit):
    assert ListPattern(pattern, ".").match(name) is hit


def test_list_matching_does_not_backtrack():
    # issue 13: LIST "" "*a*a*a*a*a*b" against a long name took 77 s with a regex
    p = ListPattern("*a" * 200 + "*b", ".")
    assert p.match("a" * 250) is False
    assert p.match("a" * 200 + "b") is True


def test_modified_utf7_names():
    assert valid_mutf7("p&AOQA5A-") and valid_mutf7("&-") and valid_mutf7("plain.name")
    assert not valid_mutf7("ä") and not valid_mutf7("a&b") and not valid_mutf7("&AGE")


def test_response_strings_become_literals_when_they_must():
    assert astring_out(None) == b"NIL"
    assert astring_out('say "hi"') == b'"say \\"hi\\""'
    assert astring_out("J\u00f6rg") == b"{5}\r\nJ\xc3\xb6rg"
    assert astring_out(b"a\r\nb") == b"{4}\r\na\r\nb"
