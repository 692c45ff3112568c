# -*- coding: utf-8 -*-
# vim: ft=sls
# The formula's map drop-in, and its site with its sites-enabled link (or an
# existing site for the same names, adopted). The transaction validates the
# whole candidate tree before anything live is touched.
{%- set tplroot = tpldir.split('/')[0] %}
{%- set sls_dependencies = tplroot ~ '.dependencies' %}
{%- set sls_transaction = tplroot ~ '.transaction' %}
{%- from tplroot ~ "/map.jinja" import odoo_websocket with context %}
{%- from tplroot ~ "/libtofs.jinja" import files_switch with context %}

include:
  - {{ sls_dependencies }}
  - {{ sls_transaction }}

odoo_websocket-nginx-site-planned:
  odoo_websocket.nginx_site_planned:
    - name: {{ odoo_websocket.nginx.site_file }}
    - site_source: {{ files_switch(['site.conf.jinja'], lookup='odoo_websocket-nginx-site-planned') }}
    - map_source: {{ files_switch(['map.conf.jinja'], lookup='odoo_websocket-nginx-map-planned') }}
    - saltenv: {{ saltenv }}
    - require:
      - sls: {{ sls_dependencies }}
    - require_in:
      - odoo_websocket: odoo_websocket-host-transaction-applied
