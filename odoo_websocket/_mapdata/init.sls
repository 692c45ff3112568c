# -*- coding: utf-8 -*-
# vim: ft=sls
# The rendered settings (defaults.yaml < osfamilymap.yaml < pillar, validated,
# with the derived values), shown in the state's comment. Unlike
# template-formula's _mapdata nothing is written to disk: the settings may hold
# odoo.conf secrets, so every odoo:config:extra_options value is masked, here
# and in the debug log.
---
{#- Get the `tplroot` from `tpldir` #}
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import odoo_websocket with context %}

{#- A copy: the masking must not reach the settings the other SLS files use #}
{%- set _settings = odoo_websocket | json | load_json %}
{%- set _config = _settings.odoo.config %}
{%- set _masked = {} %}
{%- for _key in _config.extra_options %}
{%-   do _masked.update({_key: "********"}) %}
{%- endfor %}
{%- do _config.update({"extra_options": _masked}) %}
{#- The derived odoo.conf option list repeats the extra_options values #}
{%- set _options = [] %}
{%- for _option in _config.get("options", []) %}
{%-   do _options.append([_option[0], "********"] if _option[0] in _masked else _option) %}
{%- endfor %}
{%- do _config.update({"options": _options}) %}

{%- set map = _settings %}
{%- do salt["log.debug"]("### MAP.JINJA DUMP ###\n" ~ map | yaml(False)) %}

{%- set _text %}{% include tplroot ~ "/_mapdata/_mapdata.jinja" %}{% endset %}

odoo_websocket-_mapdata-settings-shown:
  test.show_notification:
    - text: {{ _text | json }}
