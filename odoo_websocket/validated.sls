# -*- coding: utf-8 -*-
# vim: ft=sls
# Rendering map.jinja validates the pillar: a bad one stops the run here,
# before any state touches a file. This state reports the settings in use.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import odoo_websocket with context %}

odoo_websocket-validated-pillar-valid:
  test.succeed_without_changes:
    - name: >-
        pillar valid: Odoo {{ odoo_websocket.odoo.version }}
        ({{ odoo_websocket.deployment }}, workers {{ odoo_websocket.odoo.workers }}),
        {{ odoo_websocket.odoo.realtime_path }} routed to
        {{ odoo_websocket.nginx.realtime_upstream }}
