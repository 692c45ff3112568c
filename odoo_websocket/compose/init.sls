# -*- coding: utf-8 -*-
# vim: ft=sls
# Publish Odoo's HTTP and evented ports on loopback only, so browsers reach
# Odoo through nginx. The service is recreated only when the file changed.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import odoo_websocket with context %}
{%- set compose = odoo_websocket.compose %}

odoo_websocket-compose-ports-managed:
  odoo_websocket.compose_ports_managed:
    - name: {{ compose.file }}
    - service: {{ compose.service }}
    - ports: {{ compose.ports | json }}
    - bind_address: {{ compose.bind_address }}
    - backup: {{ odoo_websocket.backup | json }}

odoo_websocket-compose-service-recreated:
  cmd.run:
    - name: {{ compose.recreate_cmd | json }}
    - cwd: {{ salt['file.dirname'](compose.file) }}
    - onchanges:
      - odoo_websocket: odoo_websocket-compose-ports-managed
