# -*- coding: utf-8 -*-
# vim: ft=sls
# odoo.conf [options]: proxy_mode, workers, the evented port and extra keys.
# Odoo is restarted only when the file changed.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import odoo_websocket with context %}
{%- set config = odoo_websocket.odoo.config %}

odoo_websocket-odoo-config-managed:
  odoo_websocket.odoo_conf_managed:
    - name: {{ config.file }}
    - options: {{ config.options | json }}
    - renames: {{ config.renames | json }}
    - secret_keys: {{ config.secret_keys | json }}
    - backup: {{ odoo_websocket.backup | json }}

odoo_websocket-odoo-service-restarted:
  cmd.run:
    - name: {{ config.restart_cmd | json }}
    - onchanges:
      - odoo_websocket: odoo_websocket-odoo-config-managed
