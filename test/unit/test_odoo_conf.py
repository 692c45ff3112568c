"""odoo.conf line editing (pure logic)."""

import configparser

import pytest

import odoo_websocket_odoo_conf as odoo_conf

SAMPLE = """; odoo.conf with comments, secrets and odd spacing
[options]
addons_path = /mnt/extra-addons
admin_passwd = Sup3r%Secret%%admin
db_password=p%ss;word
; workers = 0
workers = 4
longpolling_port = 8072

[queue_job]
channels = root:2
"""


def odoo_reads(text):
    """What Odoo itself would read (RawConfigParser, as odoo/tools/config.py)."""
    parser = configparser.RawConfigParser()
    parser.read_string(text)
    return dict(parser.items("options"))


def test_sets_values_in_place_and_appends_new_keys():
    out = odoo_conf.set_options(SAMPLE, [["proxy_mode", "True"], ["workers", "2"]])
    lines = out.splitlines()
    assert lines[6] == "workers = 2"
    assert lines[8] == "proxy_mode = True"  # after the last option of [options]
    assert odoo_reads(out)["proxy_mode"] == "True"
    assert odoo_reads(out)["workers"] == "2"


def test_keeps_every_other_byte():
    out = odoo_conf.set_options(SAMPLE, [["workers", "2"]])
    assert out == SAMPLE.replace("workers = 4", "workers = 2")


def test_percent_values_survive_without_interpolation():
    out = odoo_conf.set_options(SAMPLE, [["proxy_mode", "True"], ["smtp_password", "100%"]])
    read = odoo_reads(out)
    assert read["admin_passwd"] == "Sup3r%Secret%%admin"
    assert read["db_password"] == "p%ss;word"
    assert read["smtp_password"] == "100%"


def test_renames_longpolling_port_in_place_for_odoo_16():
    out = odoo_conf.set_options(
        SAMPLE, [["gevent_port", "8072"]], {"longpolling_port": "gevent_port"}
    )
    assert "longpolling_port" not in out
    assert out.splitlines()[7] == "gevent_port = 8072"


def test_rename_drops_old_key_when_new_one_exists():
    text = "[options]\ngevent_port = 8072\nlongpolling_port = 9000\n"
    out = odoo_conf.set_options(
        text, [["gevent_port", "8072"]], {"longpolling_port": "gevent_port"}
    )
    assert out == "[options]\ngevent_port = 8072\n"


def test_idempotent():
    once = odoo_conf.set_options(SAMPLE, [["proxy_mode", "True"], ["gevent_port", "8072"]])
    assert odoo_conf.set_options(once, [["proxy_mode", "True"], ["gevent_port", "8072"]]) == once


def test_continuation_lines_of_a_replaced_value_go():
    text = "[options]\naddons_path = /a,\n    /b\nworkers = 1\n"
    out = odoo_conf.set_options(text, [["addons_path", "/c"]])
    assert out == "[options]\naddons_path = /c\nworkers = 1\n"


def test_crlf_and_missing_final_newline():
    text = "[options]\r\nworkers = 1"
    out = odoo_conf.set_options(text, [["proxy_mode", "True"]])
    assert out == "[options]\r\nworkers = 1\r\nproxy_mode = True\r\n"


def test_key_case_follows_configparser():
    out = odoo_conf.set_options("[options]\nWorkers = 1\n", [["workers", "3"]])
    assert out == "[options]\nWorkers = 3\n"


@pytest.mark.parametrize(
    "text, message",
    [
        ("workers = 1\n[options]\n", "line 1: text before the first [section]"),
        ("[options]\nthis is not an option\n", "line 2: neither 'key = value'"),
        ("[options]\nworkers = 1\nworkers = 2\n", "line 3: option 'workers' appears twice"),
        ("[options]\n[options]\n", "line 2: section [options] appears twice"),
        ("[other]\nx = 1\n", "no [options] section"),
        ("", "no [options] section"),
    ],
)
def test_malformed_files_are_refused(text, message):
    with pytest.raises(odoo_conf.OdooConfError) as raised:
        odoo_conf.set_options(text, [["proxy_mode", "True"]])
    assert message in str(raised.value)


def test_mask_hides_secrets_including_commented_samples():
    text = SAMPLE + ";admin_passwd = old-secret\n"
    masked = odoo_conf.mask(text, ["admin_passwd", "db_password"])
    for secret in ("Sup3r%Secret%%admin", "p%ss;word", "old-secret"):
        assert secret not in masked
    assert "admin_passwd = ********" in masked
    assert "addons_path = /mnt/extra-addons" in masked


def test_mask_hides_continuation_lines_of_secrets():
    masked = odoo_conf.mask("[options]\ndb_password = a\n    b-secret\n", ["db_password"])
    assert "b-secret" not in masked
