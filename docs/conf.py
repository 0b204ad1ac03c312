"""Sphinx configuration of asgi_bridge's documentation site; ``scripts/docs`` builds it.

The API reference imports asgi_bridge's modules, which need configured Django settings: the
unit tests' settings serve (``tests.settings``), with the repository root on ``sys.path``. No
extension here reaches the network (no intersphinx), so a clean clone builds offline.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django.setup()

import asgi_bridge  # noqa: E402

project = "asgi_bridge"
author = "asgi_bridge developers"
copyright = "2026, asgi_bridge developers"
version = release = asgi_bridge.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
# Headings up to ### get anchors that [text](page.md#anchor) links can name.
myst_heading_anchors = 3

# Documented in the order of the source, with the signature's types and no repeated class name.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
add_module_names = False
python_use_unqualified_type_names = True
# The ASGI types by their names, as the code writes them, rather than spelled out.
autodoc_type_aliases = {
    name: f"asgi_bridge.types.{name}" for name in ("ASGIApp", "Message", "Receive", "Scope", "Send")
}

# -n reports every cross-reference that finds no target. Without intersphinx, Django's, the
# standard library's and asgiref's names have none here: only asgi_bridge's own must resolve.
nitpick_ignore_regex = [
    (r"py:.*", r"(?!asgi_bridge\b).*"),
]
# asgi_bridge's own names that public signatures mention but that are not documented: a type
# variable, and the exchange a test response reads (a ClientResponse is made by the client).
nitpick_ignore = [
    ("py:class", "asgi_bridge.websockets.views.V"),
    ("py:class", "asgi_bridge.testing.client.HTTPExchange"),
]

html_theme = "furo"
html_title = f"asgi_bridge {release}"
