#!yaml
# -*- coding: utf-8 -*-
# vim: ft=sls
# The host's one transaction: every concern planned in this run is validated
# together, backed up in one set, written, activated (Odoo restarted only when
# its files changed, nginx reloaded) and verified with a real websocket
# handshake; any failure restores every file and restarts/reloads again.

include:
  - odoo_websocket.dependencies

odoo_websocket-host-transaction-applied:
  odoo_websocket.host_applied:
    - name: odoo_websocket
    - require:
      - odoo_websocket: odoo_websocket-settings-validated
