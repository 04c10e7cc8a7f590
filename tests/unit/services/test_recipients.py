"""The dispatcher's recipient check on a fresh server root: no config file yet (what `pip install .
&& start-msg` gives), so the local domains are the defaults: the host name and localhost."""

from __future__ import annotations

import socket

from msgsrv.config.store import ConfigStore
from msgsrv.paths import ServerRoot
from msgsrv.services.dispatcher import SERVICE
from msgsrv.store.users import Users


def test_a_root_without_a_config_file_accepts_localhost_and_the_host_name(tmp_path):
    root = ServerRoot(tmp_path / "root").ensure()
    Users(root).add("alice", "pw-of-alice")
    assert not root.config_file.exists()
    d = SERVICE(root)
    for address in ("alice@localhost", f"alice@{socket.gethostname()}", "alice@LOCALHOST.", "alice"):
        assert d.recipient(address) == ("alice", ""), address
    assert d.recipient("postmaster@localhost") == ("postmaster", "")
    user, reply = d.recipient("alice@example.org")
    assert user is None and reply.startswith("550 5.7.1")
    # the file written later, then removed again: read again each time
    ConfigStore(root.config_file).update({"local.domains": "example.org"})
    assert d.recipient("alice@example.org") == ("alice", "")
    root.config_file.unlink()
    assert d.recipient("alice@example.org")[0] is None
    assert d.recipient("alice@localhost") == ("alice", "")
