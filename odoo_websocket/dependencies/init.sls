# -*- coding: utf-8 -*-
# vim: ft=sls
# What the formula's own states need before they can run: its custom modules
# and their library (state.apply syncs nothing on a minion that never synced;
# highstate does) and the Python packages the library imports. Done only when
# the formula's modules do not load (not synced, or a package missing), so a
# run on a ready minion spends nothing here; after it, the minion's modules
# are reloaded and the other SLS files' states run in the same run.
# Then the settings are checked, once, before any concern is planned.
# A ready minion renders no settings here (map.jinja only when pip must run).
{%- set tplroot = tpldir.split('/')[0] %}
{#- The operator's module loads only when its library and packages are here. #}
{%- set ready = 'odoo_websocket.settings' in salt %}

{%- if not ready %}
{%-   from tplroot ~ "/map.jinja" import odoo_websocket with context %}
{%-   set deps = odoo_websocket.dependencies %}
{%-   set salt_pip = '/opt/saltstack/salt/salt-pip' %}
{%-   set bin_env = deps.pip_bin_env
                    or (salt_pip if salt['file.file_exists'](salt_pip)
                        else grains.pythonexecutable) %}

odoo_websocket-dependencies-modules-synced:
  saltutil.sync_all:
    - saltenv: {{ saltenv }}
    - refresh: true
    - reload_modules: true

odoo_websocket-dependencies-libraries-installed:
  pip.installed:
    - pkgs: {{ deps.pip_packages | json }}
    - bin_env: {{ bin_env }}
    - reload_modules: true
    - require:
      - saltutil: odoo_websocket-dependencies-modules-synced
{%- endif %}

odoo_websocket-dependencies-ready:
  test.succeed_without_changes:
    - name: The formula's modules and the libraries they import are in place.
    # The files the modules read at run time (odoo_websocket.settings),
    # named here so that salt-ssh, which ships a state run only the salt://
    # files its states name, ships them too. Ignored by the state.
    - settings_files:
      - salt://{{ tplroot }}/defaults.yaml
      - salt://{{ tplroot }}/osfamilymap.yaml
{%- if not ready %}
    - require:
      - pip: odoo_websocket-dependencies-libraries-installed
{%- endif %}

odoo_websocket-settings-validated:
  odoo_websocket.settings_valid:
    - name: odoo_websocket
    - require:
      - test: odoo_websocket-dependencies-ready
