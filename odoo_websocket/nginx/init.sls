# -*- coding: utf-8 -*-
# vim: ft=sls
# The formula's map drop-in, and its site with its sites-enabled link (or an
# existing site for the same names, adopted). The transaction validates the
# whole candidate tree before anything live is touched. Jinja only for the
# template sources (TOFS).
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/libtofs.jinja" import files_switch with context %}

include:
  - odoo_websocket.dependencies
  - odoo_websocket.transaction

odoo_websocket-nginx-site-planned:
  odoo_websocket.nginx_site_planned:
    - name: nginx site
    - site_source: {{ files_switch(['site.conf.jinja'], lookup='odoo_websocket-nginx-site-planned') }}
    - map_source: {{ files_switch(['map.conf.jinja'], lookup='odoo_websocket-nginx-map-planned') }}
    - require:
      - odoo_websocket: odoo_websocket-settings-validated
    - require_in:
      - odoo_websocket: odoo_websocket-host-transaction-applied
