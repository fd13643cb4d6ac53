"""A run's link to the agent: when the agent finished the session and hung up while the run was
sending, the run applies what the agent said last instead of taking the session back."""

from __future__ import annotations

import socket

from ml_dash._config import load_config
from ml_dash.agent._link import AgentLink
from ml_dash.agent._session import SessionDir
from ml_dash.agent._spool import SpoolWriter


def test_a_done_the_agent_sent_before_hanging_up_is_read_after_a_failed_send(tmp_path):
    sdir = SessionDir.create(tmp_path / "spool", "http://127.0.0.1:9", "alice/p/words")
    writer = SpoolWriter(sdir, fsync_interval=0.05, warn_bytes=1 << 40, max_bytes=1 << 40)
    run_end, agent_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    link = AgentLink(run_end, load_config(), sdir, writer, "http://127.0.0.1:9", None)
    try:
        # The agent's sender stopped (the server refused the token): it says so and hangs up,
        # before the listener thread (not started here) read a byte of it.
        agent_end.sendall(b'{"op":"say","message":"refused"}\n{"op":"done","stopped":"auth","delivered_all":false,')
        agent_end.sendall(b'"last_error":"HTTP 401","reachable":true,"events":0,"bytes":0}\n')
        agent_end.close()

        link.notify_data()  # the run's worker reports new data: the send fails (the agent is gone)

        assert link.done.is_set() and link.stopped == "auth"
        assert link.last_error == "HTTP 401" and link.reachable is True
        assert link._hub is None  # nothing taken over: the session stays in the spool as the agent left it
    finally:
        link.abort()
        writer.close()
