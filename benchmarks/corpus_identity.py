"""Two simulated corpora hold the same data: verified file by file, and recorded so that the studies' keys agree.

The simulation version of a corpus (:func:`dmf2mel.data.simulate.simulation_version`) is a hash of the source files
that write it, so a change that leaves every number alone (a new argument check, a rewritten docstring) gives
another version, and every study keyed by the corpus version - the sweep, the explanations, the quality seeds, the
ceilings - would train again on the same numbers. This script settles it with evidence: it compares two corpus
folders (one simulated by each version, the same preset and seed) file by file, the data bit for bit, and only
when every data file is identical records the two versions as one in ``benchmarks/results/corpus_identity.json``.
:func:`canonical_version` maps a version to the first one it was found identical to; the studies key their runs
by that.

``python benchmarks/corpus_identity.py OLD_CORPUS NEW_CORPUS`` (e.g. the benchmark corpus simulated by a checkout
of the earlier commit and by this one). Exit 1, nothing recorded, when anything differs.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "corpus_identity.json"
METADATA_FILE = "dmf2mel_corpus.json"
#: What two corpora must share besides their data files (the metadata's version and libraries may differ).
SAME_FIELDS = ("preset", "seed", "params", "subjects", "held_out", "files")


def data_files(folder: Path) -> list[str]:
    """Every data file of a corpus (relative names, sorted): the recordings, stimuli and the noise-free EEG."""
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*.npy"))


def digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def compare(old: Path, new: Path) -> dict:
    """The comparison of two corpus folders: versions, files, the first differences (none when identical)."""
    meta = [json.loads((folder / METADATA_FILE).read_text(encoding="utf-8")) for folder in (old, new)]
    differences = [f"metadata {field}" for field in SAME_FIELDS if meta[0].get(field) != meta[1].get(field)]
    names = [data_files(folder) for folder in (old, new)]
    if names[0] != names[1]:
        differences.append(f"data files: {len(names[0])} against {len(names[1])}")
    combined = hashlib.sha256()
    for name in names[0] if names[0] == names[1] else []:
        a, b = digest(old / name), digest(new / name)
        combined.update(f"{name}:{a}\n".encode())
        if a != b:
            differences.append(f"{name} differs")
    return {
        "versions": [meta[0].get("version"), meta[1].get("version")],
        "preset": meta[0].get("preset"),
        "seed": meta[0].get("seed"),
        "data_files": len(names[0]),
        "data_digest": combined.hexdigest(),
        "identical": not differences,
        "differences": differences[:20],
    }


def records(path: Path | None = None) -> list[dict]:
    path = RESULTS if path is None else path
    return json.loads(path.read_text(encoding="utf-8"))["identical"] if path.is_file() else []


def canonical_version(version: str | None, preset: str | None, path: Path | None = None) -> str | None:
    """The earliest version recorded as holding the same data as ``version`` for ``preset`` (``version`` itself
    when none: an identity is verified one preset at a time); a derived corpus's suffix (``+clean``,
    :mod:`ceilings`) is kept."""
    for suffix in ("+clean",):
        if version is not None and version.endswith(suffix):
            return f"{canonical_version(version.removesuffix(suffix), preset, path)}{suffix}"
    same_preset = [record for record in records(path) if record["preset"] == preset]
    seen = {version}
    changed = True
    while changed:  # follow chains: a = b, b = c
        changed = False
        for record in same_preset:
            old, new = record["versions"]
            if new in seen and old not in seen:
                seen.add(old)
                changed = True
    # the first recorded version of the chain: the one the earliest studies were keyed by
    order = [v for record in same_preset for v in record["versions"]]
    return min(seen, key=lambda v: order.index(v) if v in order else len(order))


def record(result: dict, path: Path | None = None) -> None:
    path = RESULTS if path is None else path
    entries = [r for r in records(path) if r["versions"] != result["versions"]]
    entries.append({**result, "date": datetime.date.today().isoformat()})
    path.write_text(json.dumps({"identical": entries}, indent=1) + "\n", encoding="utf-8")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path, help="a corpus simulated by the earlier version")
    parser.add_argument("new", type=Path, help="the same preset and seed simulated by the later version")
    args = parser.parse_args(argv)
    for folder in (args.old, args.new):
        if not (folder / METADATA_FILE).is_file():
            print(
                f"error: {folder}: no {METADATA_FILE}; expected a corpus folder simulated by dmf2mel", file=sys.stderr
            )
            return 2
    result = compare(args.old, args.new)
    if not result["identical"]:
        print(f"not identical ({'; '.join(result['differences'])}): nothing recorded", file=sys.stderr)
        return 1
    record(result)
    print(
        f"{result['versions'][0]} and {result['versions'][1]}: {result['data_files']} data files identical; "
        f"recorded in {RESULTS.name}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
