"""The documentation site against the code: every setting and every tested server command.

``docs/settings.md`` gives each key of ``asgi_bridge.conf._KEYS`` (and of the ``BROADCAST``
dict) a section with its type and its default; the documented default, given to the setting's
own validation, must come out as the real default. ``docs/deployment.md`` must show, for each
server, the command its end-to-end tests start, as a reader would type it. Building the site
itself is ``scripts/docs``'s job (Sphinx, with warnings as errors).
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

from django.test import SimpleTestCase

from asgi_bridge.conf import _KEYS, BridgeSettings, BroadcastSettings, parse_settings
from tests.e2e.conftest import APPLICATION, SERVER_COMMANDS
from tests.e2e.test_gunicorn_uvicorn_worker import gunicorn_command

DOCS = Path(__file__).resolve().parents[1] / "docs"
SETTINGS_PAGE = DOCS / "settings.md"
DEPLOYMENT_PAGE = DOCS / "deployment.md"
# The host and port the deployment guide writes the tested commands with.
HOST, PORT = "127.0.0.1", 8000
# "### `THREADS`" for a key, "#### `LOCATION`" for a key of the BROADCAST dict.
HEADING = re.compile(r"^(#{3,4}) `([A-Z_]+)`$", re.MULTILINE)
DEFAULT = re.compile(r"^- \*\*Default:\*\* `(.+)`$", re.MULTILINE)
TYPE = re.compile(r"^- \*\*Type:\*\* \S", re.MULTILINE)


def sections(text: str, level: int) -> dict[str, str]:
    """Each ``level`` heading's key and the text up to the next heading of any level."""
    found: dict[str, str] = {}
    matches = list(HEADING.finditer(text))
    for index, match in enumerate(matches):
        if len(match[1]) != level:
            continue
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        following = re.search(r"^#{1,4} ", text[match.end() : end], re.MULTILINE)
        stop = match.end() + following.start() if following else end
        found[match[2]] = text[match.end() : stop]
    return found


def documented_default(section: str) -> object:
    match = DEFAULT.search(section)
    if match is None:
        raise AssertionError(f"no '- **Default:** `...`' line in:\n{section}")
    return ast.literal_eval(match[1])


class SettingsReferenceTests(SimpleTestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        text = SETTINGS_PAGE.read_text()
        cls.keys = sections(text, 3)
        cls.broadcast_keys = sections(text, 4)

    def test_every_key_has_a_section(self) -> None:
        self.assertEqual(sorted(set(_KEYS) - set(self.keys)), [], "keys missing from the page")
        self.assertEqual(sorted(set(self.keys) - set(_KEYS)), [], "keys the code does not know")

    def test_every_key_says_its_type_and_default(self) -> None:
        for key, section in self.keys.items():
            with self.subTest(key=key):
                self.assertRegex(section, TYPE)
                self.assertRegex(section, DEFAULT)

    def test_documented_defaults_are_the_defaults(self) -> None:
        defaults = BridgeSettings()
        for key, (field, _validate) in _KEYS.items():
            with self.subTest(key=key):
                given = documented_default(self.keys[key])
                self.assertEqual(
                    getattr(parse_settings({key: given}), field), getattr(defaults, field)
                )

    def test_every_broadcast_key_has_a_section(self) -> None:
        names = {field.name.upper() for field in dataclasses.fields(BroadcastSettings)}
        self.assertEqual(set(self.broadcast_keys), names)
        defaults = BroadcastSettings()
        for key, section in self.broadcast_keys.items():
            with self.subTest(key=key):
                self.assertRegex(section, TYPE)
                given = documented_default(section)
                parsed = parse_settings({"BROADCAST": {key: given}}).broadcast
                self.assertEqual(getattr(parsed, key.lower()), getattr(defaults, key.lower()))


def as_typed(command: list[str]) -> str:
    """``python -m uvicorn ...`` as a reader types it: ``uvicorn ...``."""
    _executable, flag, module, *arguments = command
    assert flag == "-m", command
    return " ".join([module, *arguments])


class DeploymentGuideTests(SimpleTestCase):
    def test_every_tested_server_command_is_in_the_guide(self) -> None:
        text = DEPLOYMENT_PAGE.read_text()
        commands = {name: build(HOST, PORT) for name, build in SERVER_COMMANDS.items()}
        commands["gunicorn"] = gunicorn_command(HOST, PORT)
        for name, command in commands.items():
            with self.subTest(server=name):
                typed = as_typed(command)
                self.assertIn(APPLICATION, typed)
                # assertTrue: a failing assertIn would print the whole page.
                self.assertTrue(f"\n{typed}\n" in text, f"not in the guide: {typed}")
                self.assertIn(f"\n## {name}", text.replace("## gunicorn with", "## gunicorn"))


class FiguresTests(SimpleTestCase):
    def test_the_performance_pages_figures_are_committed(self) -> None:
        # bench/plots.py draws them from bench/saved/docs-figures.json; scripts/docs redraws them.
        page = (DOCS / "performance.md").read_text()
        for figure in ("throughput.svg", "websockets.svg"):
            with self.subTest(figure=figure):
                self.assertIn(f"figures/{figure}", page)
                self.assertTrue((DOCS / "figures" / figure).is_file())
