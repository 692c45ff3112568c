"""The docs cannot drift: the README stays short, every module of the
formula has its place in docs/architecture.md, every key the formula knows
is documented in pillar.example (the pillar reference), and every link
between the docs leads to a file that exists."""

import glob
import os
import re

import yaml

from rig.sandbox import REPO

DOCS = [os.path.join(REPO, "README.md")] + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))


def read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def keys(tree, prefix=""):
    """Every key path of a nested mapping, as a:b:c."""
    found = set()
    for key, value in tree.items():
        path = f"{prefix}{key}"
        found.add(path)
        if isinstance(value, dict):
            found |= keys(value, path + ":")
    return found


def test_the_readme_reads_in_ten_minutes():
    assert len(read(os.path.join(REPO, "README.md")).splitlines()) <= 250


def test_every_module_has_its_place_in_the_architecture_page():
    architecture = read(os.path.join(REPO, "docs", "architecture.md"))
    modules = glob.glob(os.path.join(REPO, "_*", "*.py"))
    assert len(modules) > 10
    missing = [
        os.path.relpath(path, REPO)
        for path in modules
        if os.path.relpath(path, REPO) not in architecture
    ]
    assert not missing, f"docs/architecture.md does not name {missing}"


def test_every_pillar_key_is_in_the_pillar_reference():
    defaults = yaml.safe_load(read(os.path.join(REPO, "odoo_websocket", "defaults.yaml")))
    example = yaml.safe_load(read(os.path.join(REPO, "pillar.example")))
    missing = keys(defaults) - keys(example)
    assert not missing, f"pillar.example does not document {sorted(missing)}"


def test_every_link_between_the_docs_leads_somewhere():
    broken = []
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", read(doc)):
            if "://" in target:
                continue
            if not os.path.exists(os.path.join(os.path.dirname(doc), target)):
                broken.append(f"{os.path.relpath(doc, REPO)} -> {target}")
    assert not broken, broken
