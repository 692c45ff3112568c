# -*- coding: utf-8 -*-
# vim: ft=sls
# Reactor (master side), not a state: re-applies odoo_websocket to the one
# minion whose odoo_websocket beacon asks for a heal, on the tags
#   salt/beacon/<minion id>/odoo_websocket/broken        (the verdict changed)
#   salt/beacon/<minion id>/odoo_websocket/still_broken  (the last heal failed)
# The beacon sends at most one request per interval, none while a state run
# is in progress on the minion, and stops after `attempts` (then giving_up).
# The target is the id in the tag, as a one-item list: never a glob.
{%- set parts = tag.split('/') %}
{%- if parts | length == 5 and parts[2] and parts[2] == data.get('id') %}
odoo_websocket-reactor-formula-reapplied:
  local.state.apply:
    - tgt:
      - {{ parts[2] | json }}
    - tgt_type: list
    - args:
      - mods: odoo_websocket
{%- endif %}
