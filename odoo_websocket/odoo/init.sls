#!yaml
# -*- coding: utf-8 -*-
# vim: ft=sls
# odoo.conf [options]: proxy_mode, workers, the evented port and extra keys.
# The transaction restarts Odoo only when the file changed.

include:
  - odoo_websocket.dependencies
  - odoo_websocket.transaction

odoo_websocket-odoo-config-planned:
  odoo_websocket.odoo_conf_planned:
    - name: odoo.conf
    - require:
      - odoo_websocket: odoo_websocket-settings-validated
    - require_in:
      - odoo_websocket: odoo_websocket-host-transaction-applied
