# -*- coding: utf-8 -*-
# vim: ft=sls
# The rendered settings (defaults.yaml < osfamilymap.yaml < pillar, validated,
# with the derived values), shown in the state's comment and the debug log.
# Unlike template-formula's _mapdata nothing is written to disk. The settings
# hold no secret: odoo:config:extra_options keeps only its option names (the
# planner reads the values from the pillar when it writes odoo.conf).
---
{#- Get the `tplroot` from `tpldir` #}
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import odoo_websocket with context %}

{%- if 'odoo_websocket.settings' in salt %}
{%-   set map = odoo_websocket %}
{%-   do salt["log.debug"]("### MAP.JINJA DUMP ###\n" ~ map | yaml(False)) %}
{%-   set _text %}{% include tplroot ~ "/_mapdata/_mapdata.jinja" %}{% endset %}
{%- else %}
{#-   Unvalidated, the merge may still hold extra_options values: not shown. #}
{%-   set _text = "The formula's modules are not synced on this minion: apply "
                  ~ "odoo_websocket (or saltutil.sync_all) first." %}
{%- endif %}

odoo_websocket-_mapdata-settings-shown:
  test.show_notification:
    - text: {{ _text | json }}
