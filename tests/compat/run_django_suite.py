"""Run Django's own ASGI test modules against asgi_bridge: our compatibility contract.

Downloads the sdist of the installed Django version (cached), then runs its ``tests/runtests.py``
on the ASGI modules with a settings module that swaps in asgi_bridge's classes. Prints the counts
and exits non-zero if any test fails or errors, or if the swap did not happen.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import django

HERE = Path(__file__).resolve().parent
LABELS = ("asgi", "handlers", "staticfiles_tests.test_handlers")
SWAP_BANNER = "asgi_bridge compat: Django's ASGIHandler and ASGIRequest are asgi_bridge's"


def fetch_sdist(version: str, cache: Path) -> Path:
    """Return the unpacked Django sdist for ``version``, downloading it once into ``cache``."""
    tree = cache / f"django-{version}"
    if (tree / "tests" / "runtests.py").exists():
        return tree
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"django=={version}",
            "--dest",
            str(cache),
        ],
        check=True,
    )
    archives = sorted(cache.glob(f"[dD]jango-{version}.tar.gz"))
    if not archives:
        raise SystemExit(f"compat: pip did not produce a Django {version} sdist in {cache}")
    with tarfile.open(archives[0]) as archive:
        # The "data" filter (refuse absolute paths and links out) exists from 3.10.12 / 3.11.4.
        if hasattr(tarfile, "data_filter"):
            archive.extractall(cache, filter="data")
        else:
            archive.extractall(cache)
    return tree


def run_suite(tree: Path, labels: tuple[str, ...]) -> tuple[int, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH", "")]))
    command = [
        sys.executable,
        "runtests.py",
        *labels,
        "--settings=asgi_bridge_swap_settings",
        "--parallel=1",
        "--verbosity=2",
        "--noinput",
    ]
    print("compat: running", " ".join(command[1:]), "in", tree / "tests", flush=True)
    result = subprocess.run(command, cwd=tree / "tests", env=env, capture_output=True, text=True)
    return result.returncode, result.stdout + result.stderr


def count_outcomes(output: str) -> dict[str, int]:
    """Count outcomes from runtests' verbose lines, e.g. ``test_x (asgi.tests.T.test_x) ... ok``."""
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    for outcome in re.findall(r" \.\.\. (ok|FAIL|ERROR|skipped|expected failure)", output):
        key = {
            "ok": "passed",
            "FAIL": "failed",
            "ERROR": "errors",
            "skipped": "skipped",
            "expected failure": "passed",
        }[outcome]
        counts[key] += 1
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("ASGI_BRIDGE_CACHE", HERE.parent.parent / ".cache"))
        / "django-sdist",
    )
    parser.add_argument("labels", nargs="*", default=list(LABELS))
    args = parser.parse_args()
    tree = fetch_sdist(django.get_version(), args.cache)
    returncode, output = run_suite(tree, tuple(args.labels))
    print(output)
    counts = count_outcomes(output)
    ran = re.search(r"^Ran (\d+) tests?", output, re.MULTILINE)
    swapped = SWAP_BANNER in output
    print(
        f"compat: Django {django.get_version()}: {counts['passed']} passed, "
        f"{counts['failed'] + counts['errors']} failed, {counts['skipped']} skipped "
        f"(runtests reported {ran.group(1) if ran else '?'} tests; swap active: {swapped})"
    )
    if not swapped or returncode != 0 or not ran or counts["failed"] or counts["errors"]:
        return 1
    if counts["passed"] == 0:
        print("compat: no test passed; treating as a failure")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
