# -*- coding: utf-8 -*-
# vim: ft=sls
# Reactor (master side), not a state: on
#   salt/beacon/<minion id>/odoo_websocket/giving_up
# the beacon has asked `attempts` times and the host is still broken; nothing
# is re-applied any more until it is healthy again. Say so in the master's
# log, at error level (the event itself is on the bus for any other reactor,
# engine or returner).
{%- set minion = tag.split('/')[2] %}
{%- do salt['log.error'](
      'odoo_websocket: GIVING UP self-healing ' ~ minion ~ ' after '
      ~ data.get('attempts') ~ ' attempt(s), broken since ' ~ data.get('broken_since')
      ~ ': ' ~ data.get('summary')) %}
