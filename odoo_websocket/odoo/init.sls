# -*- coding: utf-8 -*-
# vim: ft=sls
# odoo.conf [options]: proxy_mode, workers, the evented port and extra keys.
# The transaction restarts Odoo only when the file changed.
{%- set tplroot = tpldir.split('/')[0] %}
{%- set sls_dependencies = tplroot ~ '.dependencies' %}
{%- set sls_transaction = tplroot ~ '.transaction' %}
{%- from tplroot ~ "/map.jinja" import odoo_websocket with context %}

include:
  - {{ sls_dependencies }}
  - {{ sls_transaction }}

odoo_websocket-odoo-config-planned:
  odoo_websocket.odoo_conf_planned:
    - name: {{ odoo_websocket.odoo.config.file }}
    - saltenv: {{ saltenv }}
    - require:
      - sls: {{ sls_dependencies }}
    - require_in:
      - odoo_websocket: odoo_websocket-host-transaction-applied
