#!/usr/bin/env python3
"""Vendor the JavaScript the built book needs, so that no page loads anything from a CDN.

- require.js and ``@jupyter-widgets/html-manager``'s ``embed-amd.js``: static ipywidgets (e.g. progress bars);
- MathJax 3: the book's own math.

plotly.js needs no vendoring: the renderer set by ``dmf2mel.viz.setup_notebook`` embeds it in the pages.

Each package is a pinned tarball from the npm registry, fetched with ``npm pack`` (or, where npm is not
installed, downloaded from the registry's tarball URL), checked against the sha512 integrity recorded below,
and unpacked into ``book/_vendor/`` (gitignored), which ``_config.yml`` serves as static files.
Does nothing when ``book/_vendor/VERSIONS`` already lists exactly these packages.

Usage: ``python scripts/vendor_js.py [--force]``
"""

from __future__ import annotations

import base64
import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEST = ROOT / "book" / "_vendor"
REGISTRY = "https://registry.npmjs.org"

# (package, version, sha512 integrity from the registry's dist.integrity,
#  {path inside the tarball's "package/" folder: path under book/_vendor/}; a trailing "/" copies a folder)
PACKAGES = (
    (
        "requirejs",
        "2.3.7",
        "sha512-DouTG8T1WanGok6Qjg2SXuCMzszOo0eHeH9hDZ5Y4x8Je+9JB38HdTLT4/VA8OaUhBa0JPVHJ0pyBkM1z+pDsw==",
        {"require.js": "requirejs/require.js"},
    ),
    (
        "@jupyter-widgets/html-manager",
        "1.0.15",
        "sha512-5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA==",
        # embed-amd.js is self-contained (base, controls and the manager as AMD modules); the icon fonts it
        # references lie next to it.
        {
            "dist/embed-amd.js": "html-manager/embed-amd.js",
            "dist/*.woff*": "html-manager/",
            "dist/*.ttf": "html-manager/",
            "dist/*.eot": "html-manager/",
            "dist/*.svg": "html-manager/",
        },
    ),
    (
        "mathjax",
        "3.2.2",
        "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
        # The combined TeX/MathML -> CHTML component finds its extensions and fonts relative to itself.
        {
            "es5/tex-mml-chtml.js": "mathjax/tex-mml-chtml.js",
            "es5/output/chtml/": "mathjax/output/chtml/",
            "es5/input/": "mathjax/input/",
            "es5/a11y/": "mathjax/a11y/",
            "es5/ui/": "mathjax/ui/",
            "es5/sre/": "mathjax/sre/",
            "LICENSE": "mathjax/LICENSE",
        },
    ),
)


def versions_text() -> str:
    return "".join(f"{name}@{version} {integrity}\n" for name, version, integrity, _ in PACKAGES)


def integrity_of(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def fetch(name: str, version: str, workdir: Path) -> bytes:
    """The package tarball, through ``npm pack`` when npm exists, else from the registry's URL."""
    npm = shutil.which("npm")
    if npm:
        result = subprocess.run(
            [npm, "pack", "--silent", f"{name}@{version}"], cwd=workdir, check=True, capture_output=True, text=True
        )
        return (workdir / result.stdout.strip().splitlines()[-1]).read_bytes()
    basename = name.split("/")[-1]
    with urllib.request.urlopen(f"{REGISTRY}/{name}/-/{basename}-{version}.tgz", timeout=120) as response:
        return response.read()


def matches(member: str, pattern: str) -> str | None:
    """Where ``member`` (relative to ``package/``) goes for ``pattern``, or None."""
    if pattern.endswith("/"):
        return member[len(pattern) :] if member.startswith(pattern) else None
    return Path(member).name if Path(member).match(pattern) else None


def unpack(data: bytes, mapping: dict[str, str], stage: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive.getmembers():
            if not member.isfile() or not member.name.startswith("package/"):
                continue
            inner = member.name[len("package/") :]
            for pattern, target in mapping.items():
                rest = matches(inner, pattern)
                if rest is None:
                    continue
                path = stage / (target + rest if target.endswith("/") else target)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(archive.extractfile(member).read())
                break


def main(force: bool = False) -> int:
    wanted = versions_text()
    if not force and (DEST / "VERSIONS").is_file() and (DEST / "VERSIONS").read_text() == wanted:
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        stage = workdir / "stage"
        for name, version, integrity, mapping in PACKAGES:
            data = fetch(name, version, workdir)
            if integrity_of(data) != integrity:
                print(
                    f"vendor_js: {name}@{version}: integrity mismatch, expected {integrity}, got {integrity_of(data)}",
                    file=sys.stderr,
                )
                return 1
            unpack(data, mapping, stage)
        (stage / "VERSIONS").write_text(wanted)
        if DEST.exists():
            shutil.rmtree(DEST)
        DEST.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(stage), DEST)
    print(f"vendor_js: {', '.join(f'{n}@{v}' for n, v, _, _ in PACKAGES)} -> {DEST.relative_to(ROOT)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main(force="--force" in sys.argv[1:]))
