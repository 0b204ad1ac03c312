"""The package as PyPI would get it: ``python -m build`` makes an sdist and a wheel that pass
``twine check``, with one version (``asgi_bridge.__version__``), every module, ``py.typed``, and
classifiers that match the versions tox.ini tests."""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from django.test import SimpleTestCase

import asgi_bridge

ROOT = Path(__file__).resolve().parent.parent


class PackagingTests(SimpleTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.dist = Path(tempfile.mkdtemp(prefix="asgi_bridge-dist-"))
        # --no-isolation: hatchling from the test environment, so no download is needed.
        subprocess.run(
            [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(cls.dist), str(ROOT)],
            check=True,
            capture_output=True,
            timeout=300,
        )
        cls.wheel = next(cls.dist.glob("*.whl"))
        cls.sdist = next(cls.dist.glob("*.tar.gz"))

    def test_twine_check_passes(self) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "twine", "check", "--strict", str(self.wheel), str(self.sdist)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_one_version(self) -> None:
        version = asgi_bridge.__version__
        self.assertEqual(self.wheel.name, f"asgi_bridge-{version}-py3-none-any.whl")
        self.assertEqual(self.sdist.name, f"asgi_bridge-{version}.tar.gz")

    def test_the_wheel_holds_every_module_and_py_typed(self) -> None:
        with zipfile.ZipFile(self.wheel) as wheel:
            names = set(wheel.namelist())
        sources = {
            str(path.relative_to(ROOT))
            for path in (ROOT / "asgi_bridge").rglob("*")
            if path.suffix in (".py", ".typed", ".html") and "__pycache__" not in path.parts
        }
        self.assertIn("asgi_bridge/py.typed", sources)
        self.assertEqual(sources - names, set())

    def test_the_sdist_holds_the_tests(self) -> None:
        with tarfile.open(self.sdist) as sdist:
            names = sdist.getnames()
        prefix = self.sdist.name.removesuffix(".tar.gz")
        self.assertIn(f"{prefix}/tests/test_packaging.py", names)
        self.assertIn(f"{prefix}/tox.ini", names)

    def test_classifiers_match_the_tested_versions(self) -> None:
        version = asgi_bridge.__version__
        with zipfile.ZipFile(self.wheel) as wheel:
            metadata = wheel.read(f"asgi_bridge-{version}.dist-info/METADATA").decode()
        classifiers = set(re.findall(r"^Classifier: (.+)$", metadata, re.MULTILINE))
        tox = configparser.ConfigParser()
        tox.read(ROOT / "tox.ini")
        envlist = tox["tox"]["envlist"]
        pythons = set(re.findall(r"py\{?([0-9,]+)\}?-", envlist))
        tested_pythons = {
            f"3.{version[1:]}"
            for group in pythons
            for version in group.split(",")
            if version.startswith("3")
        }
        djangos = {
            f"{version[0]}.{version[1]}"
            for group in re.findall(r"django\{?([0-9,]+)\}?", envlist)
            for version in group.split(",")
        }
        for python in tested_pythons:
            self.assertIn(f"Programming Language :: Python :: {python}", classifiers)
        for django in djangos:
            self.assertIn(f"Framework :: Django :: {django}", classifiers)
        self.assertEqual(djangos, {"5.2", "6.0", "6.1"})
