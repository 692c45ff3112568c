"""nginx's capacity for nginx:max_sessions (odoo_websocket_capacity): the
in-place edit of nginx.conf on trees parsed by crossplane from files written
here, every other byte kept; the host's limits read from /proc."""

import os
import shutil
import subprocess
import time

import pytest
from salt.exceptions import CommandExecutionError

import odoo_websocket_capacity
import odoo_websocket_nginx

capacity = odoo_websocket_capacity
nginx = odoo_websocket_nginx
DEBIAN = os.path.join(os.path.dirname(__file__), "..", "fixtures", "nginx", "nginx.conf")


def stock(tmp_path):
    """Debian 12's stock nginx.conf (its includes pointing at nothing here)."""
    with open(DEBIAN, encoding="utf-8") as handle:
        return handle.read().replace("@ROOT@", str(tmp_path))


def edited(tmp_path, text, sessions=2000, cpus=2, ceiling=None, files=None):
    """The edit of nginx.conf TEXT (FILES: other files of the tree)."""
    for name, content in (files or {}).items():
        (tmp_path / name).write_text(content)
    conf = tmp_path / "nginx.conf"
    conf.write_bytes(text.encode())
    found = capacity.directives(nginx.tree(str(conf)))
    return capacity.edit(text, found, sessions, cpus, ceiling)


def changed_lines(old, new):
    """(removed, added) lines, every other line checked equal in order."""
    old_lines, new_lines = old.split("\n"), new.split("\n")
    removed = [line for line in old_lines if line not in new_lines]
    added = [line for line in new_lines if line not in old_lines]
    assert [line for line in new_lines if line not in added] == [
        line for line in old_lines if line not in removed
    ]
    return removed, added


def test_debian_stock_on_two_cores_changes_two_directives_in_place(tmp_path):
    text = stock(tmp_path)
    result = edited(tmp_path, text)
    # 2 x 2000 connections + 25% + 512 = 5512, over two workers; files: a
    # socket each, one more for each of the 1512 connections of both workers
    # that are not websockets' (one worker may take them all), 64.
    assert (result["workers"], result["connections"], result["rlimit"]) == (2, 2756, 4332)
    assert result["sessions"] == 2000
    removed, added = changed_lines(text, result["text"])
    assert removed == ["\tworker_connections 768;"]
    assert added == ["worker_rlimit_nofile 4332;", "\tworker_connections 2756;"]
    # Inserted right after worker_processes, in the main context.
    assert "worker_processes auto;\nworker_rlimit_nofile 4332;\npid " in result["text"]
    # The comments, tabs and blank lines are all still there.
    assert "# Dropping SSLv3, ref: POODLE" in result["text"]
    assert len(result["text"]) == len(text) + len("worker_rlimit_nofile 4332;\n") + 1


def test_edit_is_stable_and_nginx_parses_the_same_tree(tmp_path):
    first = edited(tmp_path, stock(tmp_path))
    again = edited(tmp_path, first["text"])
    assert again["text"] == first["text"]
    strip = ("worker_connections", "worker_rlimit_nofile")

    def shape(text):
        (tmp_path / "nginx.conf").write_text(text)
        tree = nginx.tree(str(tmp_path / "nginx.conf"))["config"][0]["parsed"]

        def walk(block):
            return [(d["directive"], d["args"] if d["directive"] not in strip else [],
                     walk(d.get("block", []))) for d in block]  # fmt: skip

        return [item for item in walk(tree) if item[0] != "worker_rlimit_nofile"]

    assert shape(first["text"]) == shape(stock(tmp_path))


def test_comments_quotes_and_crlf_are_kept(tmp_path):
    text = (
        "# sized by hand\r\n"
        'worker_processes  "4" ;  # four cores\r\n'
        "worker_rlimit_nofile 100; # too low\r\n"
        "events {\r\n"
        "    worker_connections '512' ; # was 256 # twice\r\n"
        "    multi_accept on;\r\n"
        "}\r\n"
    )
    result = edited(tmp_path, text, sessions=2000, cpus=2)
    assert result["workers"] == 4  # the number, not the CPUs
    assert result["connections"] == 1378  # ceil(5512 / 4)
    assert result["text"] == (
        "# sized by hand\r\n"
        'worker_processes  "4" ;  # four cores\r\n'
        "worker_rlimit_nofile 2820; # too low\r\n"
        "events {\r\n"
        "    worker_connections 1378 ; # was 256 # twice\r\n"
        "    multi_accept on;\r\n"
        "}\r\n"
    )


def test_lines_inserted_into_a_crlf_file_end_in_crlf(tmp_path):
    text = "worker_processes 2;\r\nevents {\r\n    multi_accept on;\r\n}\r\n"
    result = edited(tmp_path, text, sessions=2000, cpus=2)
    assert result["text"] == (
        "worker_processes 2;\r\n"
        "worker_rlimit_nofile 4332;\r\n"
        "events {\r\n"
        "    worker_connections 2756;\r\n"
        "    multi_accept on;\r\n"
        "}\r\n"
    )


def test_larger_values_are_never_lowered(tmp_path):
    text = (
        "worker_processes 8;\nworker_rlimit_nofile 65535;\nevents { worker_connections 16384; }\n"
    )
    result = edited(tmp_path, text, sessions=100)
    assert result["text"] == text
    assert (result["connections"], result["rlimit"]) == (16384, 65535)
    assert result["sessions"] > 100


def test_enough_connections_and_the_inherited_limit_need_no_change(tmp_path):
    # 8 x 768 connections hold 2000 sessions; do their 768 + 768 + 64 open
    # files fit the 1024 a worker inherits? No, so only worker_rlimit_nofile comes.
    text = "worker_processes 8;\nevents {\n    worker_connections 768;\n}\n"
    result = edited(tmp_path, text)
    assert result["connections"] == 768
    assert result["text"] == text.replace("8;\n", "8;\nworker_rlimit_nofile 1600;\n", 1)
    small = "worker_processes 16;\nevents {\n    worker_connections 400;\n}\n"
    assert edited(tmp_path, small, sessions=100)["text"] == small  # 864 files <= 1024


@pytest.mark.parametrize(
    "text, wanted",
    [
        # Absent worker_connections (nginx's default 512): first in the block.
        ("worker_processes 1;\nevents {\n}\n",
         "worker_processes 1;\nworker_rlimit_nofile 7088;\nevents {\n    "
         "worker_connections 5512;\n}\n"),
        ("events {}\nhttp {}\n",
         "worker_rlimit_nofile 7088;\nevents { worker_connections 5512;}\nhttp {}\n"),
        ("\tevents { # tuned below\n\t\tuse epoll;\n\t}\n",
         "\tworker_rlimit_nofile 7088;\n\tevents { # tuned below\n\t\t"
         "worker_connections 5512;\n\t\tuse epoll;\n\t}\n"),
        # worker_processes sharing its line: worker_rlimit_nofile goes before events.
        ("worker_processes 1; user x;\nevents {\n}\n",
         "worker_processes 1; user x;\nworker_rlimit_nofile 7088;\nevents {\n    "
         "worker_connections 5512;\n}\n"),
    ],
)  # fmt: skip
def test_absent_directives_are_inserted(tmp_path, text, wanted):
    assert edited(tmp_path, text)["text"] == wanted


def test_events_from_an_included_file_is_left_alone(tmp_path):
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"worker_processes auto;\ninclude {tmp_path}/events.conf;\nhttp {{}}\n")
    (tmp_path / "events.conf").write_text("events { worker_connections 768; }\n")
    before = conf.read_bytes()
    result = capacity.plan({"conf_file": str(conf), "max_sessions": 2000}, nginx.tree(str(conf)))
    assert result["text"] is None and result["error"] is None
    assert result["note"].startswith(f"nginx's capacity left alone ({tmp_path}/events.conf): ")
    assert conf.read_bytes() == before


def test_plan_reports_capacity_and_zero_leaves_nginx_conf_alone(tmp_path):
    conf = tmp_path / "nginx.conf"
    conf.write_text(stock(tmp_path).replace(f"include {tmp_path}", "#"))
    payload = nginx.tree(str(conf))
    off = capacity.plan({"conf_file": str(conf), "max_sessions": 0}, payload)
    cpus = capacity.cpus()  # worker_processes auto
    held = capacity.held({"workers": cpus, "connections": 768, "rlimit": None})
    assert held == 179 or cpus != 2
    assert off == {
        "text": None,
        "error": None,
        "note": f"nginx holds {held} websocket sessions: {cpus} workers x 768 "
        "connections, open files as inherited, 1024 assumed (nginx:max_sessions 0: not managed).",
    }
    on = capacity.plan({"conf_file": str(conf), "max_sessions": 2000}, payload)
    assert on["error"] is None and "worker_connections" in on["text"]
    assert on["note"].endswith("(nginx:max_sessions 2000).")


@pytest.mark.parametrize(
    "text, message",
    [
        ("events { worker_connections lots; }\n", "worker_connections 'lots' at line 1 is not"),
        ("worker_processes many;\nevents {}\n", "worker_processes 'many' at line 1 is not"),
        ("worker_rlimit_nofile 0;\nevents {}\n", "worker_rlimit_nofile '0' at line 1"),
        ("events { worker_connections 1; worker_connections 2; }\n",
         "worker_connections appears 2 times in nginx.conf's events block (lines 1, 1)"),
        ("events {\n    worker_connections\n        768;\n}\n",
         "worker_connections at line 2 is not written on one line"),
        ("events\n{\n}\n", "events at line 1: its '{' is not on the same line"),
        ("http {}\n", "nginx.conf has no events block"),
    ],
)  # fmt: skip
def test_what_cannot_be_edited_in_place_is_refused(tmp_path, text, message):
    with pytest.raises(CommandExecutionError, match="nginx.conf left unchanged") as error:
        edited(tmp_path, text)
    assert message in str(error.value)


def test_a_hard_limit_below_the_need_is_refused_naming_both(tmp_path):
    with pytest.raises(CommandExecutionError) as error:
        edited(tmp_path, stock(tmp_path), ceiling=3500)
    assert str(error.value).startswith(
        "nginx:max_sessions 2000 needs worker_rlimit_nofile 4332 (2 workers x 2756 "
        "connections), but nginx's master can give its workers at most 3500 open files"
    )
    # An operator's larger worker_connections: as many files as the master can give.
    text = "events { worker_connections 9000; }\n"
    assert edited(tmp_path, text, sessions=10, ceiling=6000)["rlimit"] == 6000


def test_capacity_figures_agree():
    for sessions in (0, 1, 200, 2000, 12345):
        connections = capacity.connections_for(sessions)
        assert capacity.sessions_for(connections) == sessions
        assert capacity.sessions_for(connections - 1) == max(0, sessions - 1)
    assert capacity.held({"workers": 2, "connections": 768, "rlimit": None}) == 179


@pytest.mark.skipif(not shutil.which("setpriv"), reason="setpriv (util-linux) missing")
def test_ceiling_is_the_masters_hard_limit_without_cap_sys_resource():
    proc = subprocess.Popen(
        ["setpriv", "--inh-caps=-sys_resource", "--bounding-set=-sys_resource",
         "prlimit", "--nofile=900:900", "sleep", "30"],
    )  # fmt: skip
    try:
        for _ in range(100):  # until prlimit has become sleep
            with open(f"/proc/{proc.pid}/cmdline", "rb") as handle:
                if handle.read().startswith(b"sleep"):
                    break
            time.sleep(0.02)
        assert capacity.ceiling(proc.pid) == 900
    finally:
        proc.kill()
        proc.wait()
    with open("/proc/sys/fs/nr_open", encoding="ascii") as handle:
        nr_open = int(handle.read())
    assert capacity.ceiling() in (nr_open, os.sysconf("SC_OPEN_MAX"))


def test_ceiling_of_an_nginx_gone_since_its_pid_file_is_this_processs():
    # A stale pid file (or a /proc of another PID namespace) must not make the
    # planning state crash: nginx would start with this process's limits.
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert not os.path.exists(f"/proc/{proc.pid}")
    assert capacity.ceiling(proc.pid) == capacity.ceiling()


def test_ten_thousand_sessions_fit_a_hard_limit_of_twenty_thousand(tmp_path):
    # 2 workers x 12756 connections; 20000 of the 25512 are websockets' (no
    # file besides the socket), the other 5512 may each have one more.
    result = edited(tmp_path, stock(tmp_path), sessions=10000, ceiling=20000)
    assert (result["connections"], result["rlimit"], result["sessions"]) == (12756, 18332, 10000)
    with pytest.raises(CommandExecutionError, match="needs worker_rlimit_nofile 18332"):
        edited(tmp_path, stock(tmp_path), sessions=10000, ceiling=18331)


def test_upstream_keepalive_connections_are_sized_in_each_worker(tmp_path):
    conf = stock(tmp_path).replace(
        "http {", "http {\n\tupstream a { server 127.0.0.1:1; keepalive 32; }\n"
        "\tupstream b { server 127.0.0.1:2; keepalive 100; }", 1
    )  # fmt: skip
    result = edited(tmp_path, conf)
    assert result["connections"] == 2756 + 132
    assert result["sessions"] == 2000  # the idle ones are not the sessions'
    assert capacity.held({"workers": 2, "connections": 2756, "rlimit": 5000,
                          "keepalive": 132}) < 2000  # fmt: skip
    with pytest.raises(CommandExecutionError, match="132 of them idle upstream keepalive"):
        edited(tmp_path, conf, ceiling=3000)
    bad = conf.replace("keepalive 32;", "keepalive many;")
    with pytest.raises(CommandExecutionError, match="keepalive 'many'"):
        edited(tmp_path, bad)
