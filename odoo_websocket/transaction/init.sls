# -*- coding: utf-8 -*-
# vim: ft=sls
# The host's one transaction: every concern planned in this run is validated
# together, backed up in one set, written, activated (Odoo restarted only when
# its files changed, nginx reloaded) and verified with a real websocket
# handshake; any failure restores every file and restarts/reloads again.
{%- set tplroot = tpldir.split('/')[0] %}
{%- set sls_dependencies = tplroot ~ '.dependencies' %}

include:
  - {{ sls_dependencies }}

odoo_websocket-host-transaction-applied:
  odoo_websocket.host_applied:
    - name: odoo_websocket
    - saltenv: {{ saltenv }}
    - require:
      - sls: {{ sls_dependencies }}
