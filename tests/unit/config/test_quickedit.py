"""msgsrv/config/quickedit.py: the line edit of configutil's fast `-v` path writes exactly what
tomlkit (ConfigStore.update) writes, or gives up and writes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from msgsrv.config import rules
from msgsrv.config.quickedit import plan, set_simple
from msgsrv.config.store import ConfigStore, cache_path, cached_get

NAMES = ["local.defdomain", "local.queuedir", "service.imap.port", "local.imap.command", "local.autorestart",
         "service.readtimeout", "local.probe.pop.timeout"]
TEXT = st.text(st.characters(blacklist_characters='"\\', blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=12)


@st.composite
def simple_store(draw):
    """A store as configutil writes it, or a person in configutil's style: quoted names, string
    and integer values, comments after values, blank and comment lines anywhere."""
    lines = []
    for name in draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=5)):
        for _ in range(draw(st.integers(0, 2))):
            lines.append(draw(st.sampled_from(["", "# a comment", "#", "# " + draw(TEXT)])))
        value = draw(st.one_of(TEXT.map(lambda t: f'"{t}"'), st.integers(-10**6, 10**6).map(str)))
        eq = draw(st.sampled_from([" = ", "=", "  =  ", "\t=\t"]))
        comment = draw(st.sampled_from(["", "   # keep me", "#x", " #"]))
        lines.append(f'"{name}"{eq}{value}{comment}')
    lines += draw(st.lists(st.sampled_from(["", "# trailing"]), max_size=3))
    return "".join(line + "\n" for line in lines)


@settings(max_examples=2000 if os.environ.get("MSGSRV_SOAK") else 150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=simple_store(), name=st.sampled_from(NAMES),
       value=st.one_of(TEXT, st.integers(1, 65535).map(str), st.sampled_from(["a.org", "/var/q", "5", ""])))
def test_line_edit_equals_tomlkit(tmp_path_factory, text, name, value):
    try:
        rules.check_value(name, value)  # configutil checks before it edits
    except ValueError:
        assume(False)
    d = tmp_path_factory.mktemp("q")
    slow, fast = d / "slow.toml", d / "fast.toml"
    slow.write_text(text)
    fast.write_text(text)
    ConfigStore(slow).update({name: value})
    if not set_simple(fast, name, value):  # gave up (an unassigned code point, say): nothing written
        printable = value.isprintable() and all(ln.replace("\t", "").isprintable() for ln in text.split("\n"))
        assert not printable and fast.read_text() == text
        return
    assert fast.read_text() == slow.read_text()
    assert json.loads(cache_path(fast).read_text()) == json.loads(cache_path(slow).read_text())


@pytest.mark.parametrize(("name", "value"), [("local.defdomain", "a.org"), ("service.imap.port", " 1143"),
                                           ("local.queuedir", "/var/my queue \u00e9"), ("local.autorestart", "on")])
def test_common_values_take_the_line_edit(tmp_path, name, value):
    path = tmp_path / "msg.toml"
    path.write_text('# site\n\n"local.autorestart" = "no"  # for now\n\n')
    assert set_simple(path, name, value) is True
    assert ConfigStore(path).get_text(name) == (value.strip() if name.endswith("port") else value)


@pytest.mark.parametrize("text", [
    '[local]\ndefdomain = "a.org"\n',  # a table
    'local.defdomain = "a.org"\n',  # a dotted key
    "\"local.defdomain\" = 'a.org'\n",  # a literal string
    '"local.defdomain" = "a\\tb"\n',  # an escape
    '"local.autorestart" = true\n',  # a boolean written by hand
    '"service.readtimeout" = 2.5\n',  # a float
    '"local.defdomain" = "a.org"\n"local.defdomain" = "b.org"\n',  # a name twice
    '"local.defdomain" = "a.org"',  # no final newline
    '  "local.defdomain" = "a.org"\n',  # indented
    '"local.defdomain" = "a.org" x\n',  # junk after the value
    '"local.defdomain" = "a.org"\r\n',  # CRLF
    "   \n",  # white space that is not an empty line
    '"service.imap.port" = +143\n',  # TOML accepts it, tomlkit would keep the spelling
])
def test_anything_else_is_left_to_tomlkit(tmp_path, text):
    path = tmp_path / "msg.toml"
    path.write_text(text)
    assert plan(text, "local.queuedir", '"/q"') is None
    assert set_simple(path, "local.queuedir", "/q") is False
    assert path.read_bytes() == text.encode()  # nothing written


@pytest.mark.parametrize(("name", "value"), [
    ("local.schedule.msprobe", "600"),  # croniter and the cross-field rule
    ("local.autorestart.timeout", "900"),
    ("local.defdomain", 'quote"d'),  # needs an escape
    ("local.queuedir", "two\nlines"),
])
def test_values_and_names_the_full_path_handles(tmp_path, name, value):
    path = tmp_path / "msg.toml"
    assert set_simple(path, name, value) is False
    assert not path.exists()


def test_symlinked_store_is_written_through(tmp_path):
    target = tmp_path / "repo" / "msg.toml"
    target.parent.mkdir()
    target.write_text("# mine\n")
    link = tmp_path / "msg.toml"
    link.symlink_to(target)
    assert set_simple(link, "local.defdomain", "a.org")
    assert link.is_symlink() and target.read_text() == '# mine\n"local.defdomain" = "a.org"\n'
    assert cached_get(link, "local.defdomain") == (True, "a.org")


def test_fast_set_imports_no_click_rich_or_toml(tmp_path):
    path = tmp_path / "msg.toml"
    path.write_text('# hand-written\n"local.autorestart" = "no"   # for now\n')
    code = ("import sys; from msgsrv.cli.configutil import main; "
            f"rc = main(['-f', {str(path)!r}, '-o', 'local.autorestart', '-v', 'yes']); "
            "print(rc, sorted(m for m in ('click', 'rich', 'tomlkit', 'tomllib', 'croniter', 'dataclasses') "
            "if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={k: v for k, v in os.environ.items()
                            if k != "MSGSRV_DEBUG" and not k.startswith("COVERAGE_")})  # coverage imports tomllib
    assert (r.returncode, r.stdout, r.stderr) == (0, "0 []\n", "")
    assert path.read_text() == '# hand-written\n"local.autorestart" = "yes"   # for now\n'
