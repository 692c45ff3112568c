# -*- coding: utf-8 -*-
# vim: ft=sls
# Each included SLS plans one concern; odoo_websocket.transaction (included by
# each of them) then applies all of them at once and verifies the websocket.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import odoo_websocket with context %}

include:
  - .dependencies
{%- if odoo_websocket.compose.enabled %}
  - .compose
{%- endif %}
{%- if odoo_websocket.odoo.config.enabled %}
  - .odoo
{%- endif %}
{%- if odoo_websocket.nginx.enabled %}
  - .nginx
{%- endif %}
  - .transaction
