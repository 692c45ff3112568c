"""The first `state.apply odoo_websocket` from the master on a minion that has
never synced the formula's modules (state.apply syncs nothing by itself,
unlike highstate): the run syncs them and applies the formula, with no
manual `saltutil.sync_all`."""

import os

import pytest

from conftest import minion_options
from helpers import Formula, states

SYNC_ID = "odoo_websocket-dependencies-modules-synced"
PIP_ID = "odoo_websocket-dependencies-libraries-installed"
TRANSACTION_ID = "odoo_websocket-host-transaction-applied"


@pytest.fixture
def fresh_minion(salt_master):
    factory = salt_master.salt_minion_daemon("odoo-ws-fresh", **minion_options())
    with factory.started():
        yield factory


@pytest.mark.core
def test_first_apply_on_a_minion_that_never_synced(salt_master, fresh_minion, pillar_dir, sandbox):
    extmods = fresh_minion.config["extension_modules"]
    synced = [os.path.join(extmods, "modules", "odoo_websocket.py"),
              os.path.join(extmods, "utils", "odoo_websocket_changes.py")]  # fmt: skip
    assert not any(os.path.exists(path) for path in synced)
    formula = Formula(salt_master, fresh_minion, pillar_dir)
    first = formula.apply(sandbox.pillar())
    assert first.returncode == 0, first.stdout
    ran = states(first)
    assert ran[SYNC_ID]["changes"], ran[SYNC_ID]  # the run synced the modules itself
    # Not synced, so unknown: pip checked the pinned libraries (all present here).
    assert ran[PIP_ID]["result"] is True and not ran[PIP_ID]["changes"], ran[PIP_ID]
    assert ran[TRANSACTION_ID]["result"] is True, ran[TRANSACTION_ID]
    assert sandbox.site_file in ran[TRANSACTION_ID]["changes"]
    assert all(os.path.exists(path) for path in synced)
    # Synced now: the next run neither syncs nor changes anything.
    second = states(formula.apply(sandbox.pillar()))
    assert SYNC_ID not in second and PIP_ID not in second
    assert all(not value["changes"] for value in second.values()), second
