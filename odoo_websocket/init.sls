#!yaml
# -*- coding: utf-8 -*-
# vim: ft=sls
# Each included SLS plans one concern (a concern the pillar does not manage
# says so and plans nothing); odoo_websocket.transaction (included by each of
# them) then applies all of them at once and verifies the websocket.
# Plain YAML, as are most of the SLS files: the states read the settings
# when they run, so nothing here needs them (or Jinja) to render. Includes
# are absolute, so `odoo_websocket/nginx` and `odoo_websocket.nginx.init`
# work as names too.

include:
  - odoo_websocket.dependencies
  - odoo_websocket.compose
  - odoo_websocket.odoo
  - odoo_websocket.nginx
  - odoo_websocket.transaction
