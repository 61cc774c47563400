"""The chart's copy of the CRDs: the repository's crds/ with every schema `description` removed.

Helm stores each release (the rendered manifest plus the chart's own files, gzipped and
base64-encoded) in one Secret, and a Secret holds at most 1 MiB. With their descriptions the five
CRDs alone make a release of about 1.2 MiB, so the chart carries them without (as Argo Rollouts'
own chart does); `kubectl apply --server-side -f crds/` still installs the documented ones.
`python chart_crds.py` (or `charts/ramp/tests/run --sync-crds`) rewrites charts/ramp/files/crds/;
test_chart.py fails when the copy is not exactly what this produces.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent.parent.parent
SOURCE = REPO / "crds"
TARGET = REPO / "charts" / "ramp" / "files" / "crds"

HEADER = "# Generated from crds/{name} without schema descriptions by charts/ramp/tests/chart_crds.py.\n"

# JSON-schema keywords whose value is a schema, a list of schemas or a map of named schemas.
# Walking only these keeps a property that happens to be called `description` intact.
SCHEMA = ("items", "additionalProperties", "not")
SCHEMA_LISTS = ("anyOf", "allOf", "oneOf")
SCHEMA_MAPS = ("properties", "patternProperties")


def without_descriptions(schema):
    """A copy of an openAPIV3Schema node with the descriptions of it and its sub-schemas dropped."""
    if not isinstance(schema, dict):
        return schema
    stripped = {}
    for key, value in schema.items():
        if key == "description":
            continue
        if key in SCHEMA:
            value = [without_descriptions(v) for v in value] if isinstance(value, list) else without_descriptions(value)
        elif key in SCHEMA_LISTS:
            value = [without_descriptions(v) for v in value]
        elif key in SCHEMA_MAPS:
            value = {name: without_descriptions(v) for name, v in value.items()}
        stripped[key] = value
    return stripped


def chart_crd(crd: dict) -> dict:
    """The CRD as the chart ships it: every version's schema without descriptions."""
    versions = []
    for version in crd["spec"]["versions"]:
        version = dict(version)
        if "schema" in version:
            version["schema"] = {
                "openAPIV3Schema": without_descriptions(version["schema"]["openAPIV3Schema"])
            }
        versions.append(version)
    return {**crd, "spec": {**crd["spec"], "versions": versions}}


def chart_crd_text(name: str) -> str:
    crd = yaml.load((SOURCE / name).read_text(), Loader=yaml.CSafeLoader)
    body = yaml.dump(chart_crd(crd), Dumper=yaml.CSafeDumper, sort_keys=False, width=4096)
    return HEADER.format(name=name) + body


def main() -> int:
    TARGET.mkdir(parents=True, exist_ok=True)
    wanted = sorted(p.name for p in SOURCE.glob("*.yaml"))
    for stale in TARGET.glob("*.yaml"):
        if stale.name not in wanted:
            stale.unlink()
    for name in wanted:
        (TARGET / name).write_text(chart_crd_text(name))
    print(f"wrote {len(wanted)} CRDs to {TARGET.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
