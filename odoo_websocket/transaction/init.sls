# -*- coding: utf-8 -*-
# vim: ft=sls
# The host's one transaction: every concern planned in this run is validated
# together, backed up in one set, written, activated (Odoo restarted only when
# its files changed, nginx reloaded) and verified with a real websocket
# handshake; any failure restores every file and restarts/reloads again.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import odoo_websocket with context %}

odoo_websocket-host-transaction-applied:
  odoo_websocket.host_applied:
    - name: odoo_websocket
    - settings: {{ odoo_websocket | json }}
    - saltenv: {{ saltenv }}
