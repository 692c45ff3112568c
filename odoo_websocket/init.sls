# -*- coding: utf-8 -*-
# vim: ft=sls
# Order matters: Odoo's side first (ports, odoo.conf), then nginx routes to it.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import odoo_websocket with context %}

include:
{%- if odoo_websocket.compose.enabled %}
  - .compose
{%- endif %}
{%- if odoo_websocket.odoo.config.enabled %}
  - .odoo
{%- endif %}
{%- if odoo_websocket.nginx.enabled %}
  - .nginx
{%- endif %}
  - .validated
