"""Validates custom resources strictly against the openAPIV3Schema of their CRDs.

kubernetes-validate knows only Kubernetes' own kinds; the Prometheus Operator's PodMonitor
and PrometheusRule are checked here against the schemas vendored in
tests/fixtures/prometheus-operator/ (tests/kits.rs runs this with the venv's Python).

usage: crd_validate.py SCHEMA_DIR KUBERNETES_VERSION FILE...

SCHEMA_DIR holds one openAPIV3Schema per kind, named GROUP_VERSION_KIND.yaml (kind in lower
case). Strict as the API server's strict field validation (kubectl's default): every object
schema with properties admits no other field unless it says otherwise (additionalProperties,
x-kubernetes-preserve-unknown-fields); `nullable` admits null. `metadata` is checked against
ObjectMeta of kubernetes-validate's strict schemas for KUBERNETES_VERSION. A schema with CEL
rules (x-kubernetes-validations) is refused: they would go unchecked.

Prints one line per object, `PASS FILE kind/name` or `FAIL FILE kind/name: PATH: MESSAGE`
(every error), and exits 1 when an object failed or has no schema in SCHEMA_DIR.
"""

import json
import os
import sys
from importlib.resources import as_file, files

import jsonschema
import yaml
from referencing import Registry, Resource

DEFINITIONS = "https://kubernetes.io/api/_definitions.json"
OBJECT_META = DEFINITIONS + "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def strict(node, path="#"):
    """The schema as the API server applies it with strict field validation."""
    if isinstance(node, list):
        return [strict(n, path) for n in node]
    if not isinstance(node, dict):
        return node
    if "x-kubernetes-validations" in node:
        raise SystemExit(f"{path}: CEL rules (x-kubernetes-validations) cannot be checked here")
    out = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties", "$defs"):
            out[key] = {k: strict(v, f"{path}/{key}/{k}") for k, v in value.items()}
        elif key in ("description", "default", "example", "enum"):
            out[key] = value
        else:
            out[key] = strict(value, f"{path}/{key}")
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def kubernetes_definitions(version):
    """kubernetes-validate's strict definitions for this Kubernetes version (e.g. 1.37.0)."""
    ref = files("kubernetes_validate").joinpath(
        f"kubernetes-json-schema/v{version}-local-strict/_definitions.json"
    )
    with as_file(ref) as f:
        with open(f) as fh:
            return json.load(fh)


def main(argv):
    if len(argv) < 4:
        raise SystemExit(__doc__)
    schema_dir, version, files = argv[1], argv[2], argv[3:]
    registry = Resource.from_contents(kubernetes_definitions(version)) @ Registry()
    validators = {}
    failed = False
    for filename in files:
        with open(filename) as fh:
            objects = [o for o in yaml.safe_load_all(fh) if o]
        for obj in objects:
            kind = obj.get("kind", "")
            name = f"{kind.lower()}/{(obj.get('metadata') or {}).get('name', '')}"
            group, _, api_version = obj.get("apiVersion", "").rpartition("/")
            key = f"{group}_{api_version}_{kind.lower()}"
            if key not in validators:
                path = os.path.join(schema_dir, key + ".yaml")
                if not os.path.isfile(path):
                    validators[key] = None
                else:
                    with open(path) as fh:
                        schema = strict(yaml.safe_load(fh))
                    schema["properties"]["metadata"] = {"$ref": OBJECT_META}
                    schema["required"] = sorted(
                        set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"}
                    )
                    validators[key] = jsonschema.Draft202012Validator(schema, registry=registry)
            validator = validators[key]
            if validator is None:
                print(f"FAIL {filename} {name}: no schema {key}.yaml in {schema_dir}")
                failed = True
                continue
            errors = sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.path)))
            if not errors:
                print(f"PASS {filename} {name}")
            for e in errors:
                where = ".".join(str(p) for p in e.path) or "(top)"
                print(f"FAIL {filename} {name}: {where}: {e.message}")
                failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
