"""nginx:max_sessions through the change engine on a running nginx: the
capacity edit of the stock nginx.conf is validated on the whole tree,
written, reloaded (the new workers get the new open-file limit), and put
back byte for byte when the change fails."""

import os
import socket
import subprocess
import time

import odoo_websocket_capacity
import odoo_websocket_nginx
import odoo_websocket_nginx_service
from engine import engine_apply

capacity = odoo_websocket_capacity
nginx = odoo_websocket_nginx
NGINX = "/usr/sbin/nginx"


def apply(box, changes):
    nginx_part = {"conf_file": box.conf_file, "binary": NGINX, "start": False}
    return engine_apply(changes, nginx=nginx_part, backup_dir=box.backup_dir)


def sized(box, max_sessions=2000):
    """The capacity change for the sandbox's live nginx.conf, and its note."""
    found = capacity.plan({"conf_file": box.conf_file, "max_sessions": max_sessions},
                          nginx.tree(box.conf_file))  # fmt: skip
    assert found["error"] is None, found
    change = {"concern": "nginx", "path": box.conf_file, "kind": "file", "data": found["text"]}
    return change, found["note"]


def worker_files(box):
    """The open-file limit of each running nginx worker."""
    master = odoo_websocket_nginx_service.pid(box.conf_file)
    pids = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout
    limits = set()
    for pid in pids.split():
        try:
            with open(f"/proc/{pid}/limits", encoding="ascii") as handle:
                row = next(line for line in handle if line.startswith("Max open files"))
        except FileNotFoundError:  # an old worker that left since pgrep listed it
            continue
        limits.add(int(row.split()[3]))
    return limits


def workers_soon(box, limits, seconds=10):
    """Old workers leave once their last connection closes."""
    deadline = time.monotonic() + seconds
    while worker_files(box) != limits and time.monotonic() < deadline:
        time.sleep(0.05)
    return worker_files(box)


def test_capacity_edit_is_validated_reloaded_and_then_a_no_op(running_nginx):
    box = running_nginx
    with open(box.conf_file, encoding="utf-8") as handle:
        stock = handle.read()
    change, note = sized(box)
    result = apply(box, [change])
    assert result["result"] is True, result
    assert result["changed"] == [box.conf_file]
    assert "Staged check: nginx accepts the new configuration." in result["comment"]
    assert "nginx reloaded gracefully (new workers running)." in result["comment"]
    with open(box.conf_file, encoding="utf-8") as handle:
        assert handle.read() == change["data"] != stock
    # The running workers are the new configuration's: worker_rlimit_nofile.
    now = capacity.sizing(capacity.directives(nginx.tree(box.conf_file)), capacity.cpus())
    assert workers_soon(box, {now["rlimit"]}) == {now["rlimit"]}
    assert now["connections"] * now["workers"] >= capacity.connections_for(2000)
    assert f"{now['workers']} workers x {now['connections']} connections" in note
    again = capacity.plan({"conf_file": box.conf_file, "max_sessions": 2000},
                          nginx.tree(box.conf_file))  # fmt: skip
    assert again["text"] is None and again["note"] == note


def test_rejected_or_refused_capacity_changes_leave_nginx_conf_byte_for_byte(running_nginx):
    box = running_nginx
    served = worker_files(box)
    change, _ = sized(box)
    before = box.fingerprint()
    # Validation fails: nginx rejects the whole candidate (a broken site with
    # the capacity edit): nothing is written.
    broken = {"concern": "nginx", "path": box.map_file, "kind": "file", "data": "server {\n"}
    rejected = apply(box, [change, broken])
    assert rejected["result"] is False
    assert "nginx would reject the new configuration" in rejected["comment"]
    assert box.fingerprint() == before
    # nginx -t passes, the reload does not (a port another process holds):
    # nginx.conf was written, then restored, and nginx serves the old one.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        site = f"server {{ listen 127.0.0.1:{holder.getsockname()[1]}; }}\n"
        held = {"concern": "nginx", "path": box.map_file, "kind": "file", "data": site}
        refused = apply(box, [change, held])
    assert refused["result"] is False, refused
    assert "nginx did not take the new configuration" in refused["comment"]
    assert "(98: Address already in use)" in refused["comment"]  # nginx's error log
    assert "Every file of the run was restored from backup" in refused["comment"]
    assert box.fingerprint() == before
    assert worker_files(box) == served
    assert not os.path.exists(os.path.join(box.backup_dir, "journal.json"))
