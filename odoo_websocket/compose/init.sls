# -*- coding: utf-8 -*-
# vim: ft=sls
# Publish Odoo's HTTP and evented ports on loopback only, so browsers reach
# Odoo through nginx. The transaction recreates the service only when the
# file changed.
{%- set tplroot = tpldir.split('/')[0] %}
{%- set sls_dependencies = tplroot ~ '.dependencies' %}
{%- set sls_transaction = tplroot ~ '.transaction' %}
{%- from tplroot ~ "/map.jinja" import odoo_websocket with context %}

include:
  - {{ sls_dependencies }}
  - {{ sls_transaction }}

odoo_websocket-compose-ports-planned:
  odoo_websocket.compose_ports_planned:
    - name: {{ odoo_websocket.compose.file }}
    - saltenv: {{ saltenv }}
    - require:
      - sls: {{ sls_dependencies }}
    - require_in:
      - odoo_websocket: odoo_websocket-host-transaction-applied
