# -*- coding: utf-8 -*-
# vim: ft=sls
# The map drop-in, the site and its sites-enabled link form one change set,
# validated with nginx -t on the whole tree and rolled back on failure.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import odoo_websocket with context %}
{%- set nginx = odoo_websocket.nginx %}

odoo_websocket-nginx-config-managed:
  odoo_websocket.nginx_managed:
    - name: {{ nginx.site_file }}
    - site_source: salt://{{ tplroot }}/files/default/site.conf.jinja
    - map_source: salt://{{ tplroot }}/files/default/connection_upgrade_map.conf.jinja
    - map_file: {{ nginx.map_file }}
    - site_link: {{ nginx.site_link | json }}
    - conf_file: {{ nginx.conf_file }}
    - binary: {{ nginx.binary }}
    - reload: {{ nginx.reload }}
    - restart: {{ nginx.restart }}
    - start: {{ nginx.start }}
    - backup: {{ odoo_websocket.backup | json }}
    - saltenv: {{ saltenv }}
    - context:
        settings: {{ odoo_websocket | json }}
