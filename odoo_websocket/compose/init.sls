#!yaml
# -*- coding: utf-8 -*-
# vim: ft=sls
# Publish Odoo's HTTP and evented ports on loopback only, so browsers reach
# Odoo through nginx. The transaction recreates the service only when the
# file changed.

include:
  - odoo_websocket.dependencies
  - odoo_websocket.transaction

odoo_websocket-compose-ports-planned:
  odoo_websocket.compose_ports_planned:
    - name: compose ports
    - require:
      - odoo_websocket: odoo_websocket-settings-validated
    - require_in:
      - odoo_websocket: odoo_websocket-host-transaction-applied
