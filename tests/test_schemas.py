"""The JSON Schema files in estimator/schemas/ (draft 2020-12, shipped in the wheel, for editors and
other tools) agree with the loaders: every shipped catalog and docs/examples/*.yaml is valid, broken
documents are rejected, and on hundreds of mutated documents the schema and the Python validator
give the same verdict (the schema is never stricter; it is looser only where a rule relates several
fields, which JSON Schema cannot say).

The catalog schemas are generated from the record classes (estimator/catalog/core.py, estimator/catalog/systems.py)
with the loader's conversion rules, and the calibration schema is written out below from
estimator/records/calibration.py's and estimator/records/collectives.py's validators. After an intended change:
``python tests/test_schemas.py --update`` rewrites the files (field descriptions come from the tables
in catalogs/README.md).
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import re
import sys
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "estimator" / "schemas"
CATALOGS = ROOT / "catalogs"
DRAFT = "https://json-schema.org/draft/2020-12/schema"

# -- building the schemas ------------------------------------------------------------------------

NON_EMPTY = {"type": "string", "pattern": r"\S"}
# estimator/numbers.py's quantity grammar (parse_quantity), for numbers written as strings ("175B").
QUANTITY_PATTERN = (r"^\s*(\$\s*)?\+?((\d{1,3}([,_]\d{3})+|\d+)(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*[kKmMbBgGtTpP]?\s*$")
DATE = {"type": "string", "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$"}


def _catalog_specs() -> list[tuple[str, str, str, type, dict[str, tuple[str, ...]]]]:
    """(schema name, catalog file, list key, record class, enumerated fields) per catalog file."""
    from estimator.catalog import records as catalog, stacks, systems

    datasets = [("datasets", "datasets.yaml", "datasets", catalog.Dataset, {})] if hasattr(catalog, "Dataset") else []
    return datasets + [
        ("gpus", "gpus.yaml", "accelerators", catalog.Accelerator, {}),
        ("prices", "prices.yaml", "prices", catalog.Price, {"offer": catalog.OFFERS}),
        ("models", "models.yaml", "models", catalog.Model, {}),
        ("runs", "runs.yaml", "runs", catalog.Run, {"scope": catalog.RUN_SCOPES}),
        ("sample_runs", "sample_runs.yaml", "sample_runs", catalog.SampleRun, {}),
        ("systems", "systems.yaml", "systems", systems.System,
         {"scale_up": systems.SCALE_UP_KINDS, "scale_out": systems.SCALE_OUT_KINDS}),
        ("layout_runs", "layout_runs.yaml", "layout_runs", systems.LayoutRun,
         {"precision": systems.PRECISIONS, "recompute": systems.RECOMPUTE_MODES,
          "flops_convention": systems.FLOPS_CONVENTIONS}),
        ("stacks", "stacks.yaml", "stacks", stacks.Stack, {"engine": stacks.ENGINES}),
        ("stack_runs", "stack_runs.yaml", "stack_runs", stacks.StackRun,
         {"split": stacks.SPLITS, "recompute": systems.RECOMPUTE_MODES, "master_weights": stacks.MASTER_WEIGHTS}),
        ("stack_runs_at_scale", "stack_runs_at_scale.yaml", "stack_runs", stacks.StackRun,
         {"split": stacks.SPLITS, "recompute": systems.RECOMPUTE_MODES, "master_weights": stacks.MASTER_WEIGHTS}),
    ]


def _readme_descriptions() -> dict[str, dict[str, str]]:
    """catalogs/README.md's field tables: {"gpus.yaml": {"id": "...", ...}}."""
    out: dict[str, dict[str, str]] = {}
    current = None
    for line in (CATALOGS / "README.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            match = re.match(r"#+\s+([a-z_]+\.yaml)\b", line)
            current = match.group(1) if match else None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if current and len(cells) >= 3 and cells[0].startswith("`"):
            name = cells[0].strip("`")
            meaning = " | ".join(cells[2:]).strip()
            out.setdefault(current, {})[name] = (f"{cells[1]}: {meaning}" if meaning else cells[1]).replace("\\|", "|")
    return out


def _field_schema(name: str, annotation: str, enums: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    """The JSON Schema of one record field, by the loader's rules (estimator/catalog/fields.py, _convert)."""
    from estimator.catalog import fields as catalog

    kind = annotation.replace(" | None", "").strip()
    if name in enums:
        return {"enum": list(enums[name])}
    if kind == "float":
        if name in catalog._FRACTIONS:
            return {"type": "number", "exclusiveMinimum": 0, "maximum": 1}
        return {"anyOf": [{"type": "number", "exclusiveMinimum": 0},
                          {"type": "string", "pattern": QUANTITY_PATTERN}]}
    if kind == "int":
        return {"type": "integer", "minimum": 1}
    if kind == "bool":
        return {"type": "boolean"}
    if kind == "str":
        return dict(NON_EMPTY)
    if kind == "_dt.date":
        return dict(DATE)
    if kind == "tuple[str, ...]":
        return {"type": "array", "items": dict(NON_EMPTY)}
    if kind == "Mapping[str, float]":
        return {"type": "object", "minProperties": 1, "propertyNames": {"enum": list(catalog.DTYPES)},
                "additionalProperties": {"type": "number", "exclusiveMinimum": 0}}
    if kind == "Mapping[str, Any]":
        return {"type": "object"}
    raise AssertionError(f"no JSON Schema rule for {name}: {annotation}")


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [*(schema["anyOf"] if "anyOf" in schema else [schema]), {"type": "null"}]}


def catalog_schema(name: str) -> dict[str, Any]:
    spec = {s[0]: s for s in _catalog_specs()}[name]
    _, file, key, cls, enums = spec
    described = _readme_descriptions().get(file, {})
    properties, required = {}, []
    for field in fields(cls):
        schema = _field_schema(field.name, str(field.type), enums)
        if field.default is MISSING and field.default_factory is MISSING:
            required.append(field.name)
        else:
            schema = _nullable(schema)  # the loader treats null as "not given"
        if field.name in described:
            schema = {"description": described[field.name], **schema}
        properties[field.name] = schema
    return {
        "$schema": DRAFT,
        "title": f"gpucost catalog {file}",
        "description": f"catalogs/{file}: schema_version 1 and a '{key}' list (catalogs/README.md). Checked on "
                       "load by gpucost, which also checks what a schema cannot: unique ids and aliases, and "
                       "ids that refer to other catalog files.",
        "type": "object",
        "required": ["schema_version", key],
        "properties": {
            "schema_version": {"const": 1},
            key: {"type": "array", "items": {"$ref": "#/$defs/entry"}},
        },
        "$defs": {"entry": {"type": "object", "required": required, "properties": properties,
                            "additionalProperties": False}},
    }


def _obj(required: list[str], properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties, "additionalProperties": False, **extra}


def calibration_schema() -> dict[str, Any]:
    """estimator/records/calibration.py's validate_calibration (and collectives.py's validate_collectives),
    written as JSON Schema."""
    from estimator.records import calibration, collectives

    num = {"type": "number", "minimum": 0}  # _Check.number: finite and >= 0
    any_num = {"type": "number"}
    pos = {"type": "number", "exclusiveMinimum": 0}
    count0 = {"type": "integer", "minimum": 0}
    count1 = {"type": "integer", "minimum": 1}
    text = dict(NON_EMPTY)
    null = {"type": "null"}

    def opt(schema: dict[str, Any]) -> dict[str, Any]:
        return {"anyOf": [schema, null]}

    def enum(values: tuple[str, ...]) -> dict[str, Any]:
        return {"enum": list(values)}

    strings = {"type": "array", "items": {"type": "string"}}
    stats = opt(_obj(["min", "median", "max"], {"min": any_num, "median": any_num, "max": any_num}))
    run_stats = {"best_tflops": num, "median_tflops": num, "worst_tflops": num, "stdev_pct": num, "iterations": count1}

    def item(keys: tuple[str, ...]) -> dict[str, Any]:
        """One shape (m, n, k) or width (width, tokens, params): its run statistics, or skipped."""
        return {
            "type": "object", "required": list(keys),
            "properties": {**{k: count1 for k in keys}, **{k: True for k in run_stats}, "skipped": True},
            "additionalProperties": False,
            "if": {"required": ["skipped"]},
            "then": {"properties": {"skipped": text}},
            "else": {"required": list(run_stats), "properties": run_stats},
        }

    def sustained(keys: tuple[str, ...]) -> dict[str, Any]:
        """An entry's sustained window (profiler/sustained.py): its size, then the window's figures."""
        pos = {"type": "number", "exclusiveMinimum": 0}
        figures = {"window_s": pos, "warmup_s": num, "duration_s": pos, "iterations": count1, "median_tflops": pos,
                   "mean_tflops": pos, "best_tflops": pos, "worst_tflops": pos, "stdev_pct": num,
                   "drift_pct": {"type": "number", "minimum": -100}, "clock_mhz": stats, "power_w": stats,
                   "throttled": opt({"type": "boolean"}), "reasons": strings}
        required = list(keys) + [k for k in figures if k not in ("clock_mhz", "power_w")]
        return opt(_obj(required, {**{k: count1 for k in keys}, **figures}))

    def precision_entry(section: str) -> dict[str, Any]:
        items_key = "shapes" if section == "matmul" else "widths"
        properties = {"best_tflops": True, "median_tflops": True, "peak_tflops": opt(num), "pct_of_peak": opt(num),
                      items_key: {"type": "array", "items": {"$ref": f"#/$defs/{items_key[:-1]}"}},
                      "skipped": opt(text),
                      "sustained": sustained(("m", "n", "k") if section == "matmul" else ("width", "tokens", "params"))}
        if section == "mlp":
            properties["optimizer"] = opt(text)
        return {
            "type": "object", "properties": properties, "additionalProperties": False,
            "if": {"required": ["best_tflops"]},
            "then": {"required": ["median_tflops"], "properties": {"best_tflops": num, "median_tflops": num}},
            "else": {"required": ["skipped"]},
        }

    precisions = {"type": "object", "propertyNames": enum(calibration.DTYPES)}
    model_result = {
        "type": "object",
        "if": {"required": ["skipped"]},
        "then": _obj(["skipped"], {"skipped": text}),
        "else": _obj(["flops_per_token", *run_stats],
                     {"flops_per_token": num, "tokens_per_s": opt(num), **run_stats}),
    }
    model = _obj(["id", "seq_len", "micro_batch", "num_layers", "layers_timed", "results"], {
        "id": text, "source": opt(text), "seq_len": count1, "micro_batch": count1, "num_layers": count1,
        "layers_timed": count0, "optimizer": opt(text), "notes": strings,
        "results": {"type": "object", "propertyNames": enum(calibration.DTYPES),
                    "additionalProperties": {"$ref": "#/$defs/model_result"}},
    })
    # estimator/records/torch_model.py: the `torch_model` section (gpucost profile --torch-model)
    torch_model_stats = {"samples_per_s": pos, "median_samples_per_s": pos, **run_stats}
    torch_model_result = {
        "type": "object",
        "if": {"required": ["skipped"]},
        "then": _obj(["skipped"], {"skipped": text}),
        "else": _obj(list(torch_model_stats), {
            **torch_model_stats, "slow_steps": count0,
            "segment_samples_per_s": {"type": "array", "items": pos, "minItems": 1, "maxItems": 5},
            "peak_memory_gib": pos}),
    }
    torch_model = _obj(["id", "spec", "params", "batch_size", "flops_per_sample", "forward_flops_per_sample",
                        "optimizer", "results"], {
        "id": text, "spec": text, "created_utc": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}"},
        "command": text, "partial": {"type": "boolean"}, "duration_s": num, "params": count0, "batch_size": count1,
        "flops_per_sample": num, "forward_flops_per_sample": num, "optimizer": text, "loss": text, "notes": strings,
        "results": {"type": "object", "propertyNames": enum(calibration.DTYPES), "minProperties": 1,
                    "additionalProperties": {"$ref": "#/$defs/torch_model_result"}},
    })
    bandwidth_stats = {"buffer_bytes": count1, "best_gbps": num, "median_gbps": num, "worst_gbps": num,
                       "stdev_pct": num, "iterations": count1}
    bandwidth = {
        "type": "object",
        "properties": {**{k: True for k in bandwidth_stats}, "peak_gbps": opt(num), "pct_of_peak": opt(num),
                       "skipped": True},
        "additionalProperties": False,
        "if": {"required": ["skipped"]},
        "then": {"properties": {"skipped": text}},
        "else": {"required": list(bandwidth_stats), "properties": bandwidth_stats},
    }
    device_ints = ("index", "memory_bytes", "num_sms", "l2_cache_bytes", "num_cores", "num_logical_cpus",
                   "num_threads", "llc_bytes")
    device = _obj(["name", "backend", "catalog_id"], {
        "name": text, "backend": enum(calibration.BACKENDS), "catalog_id": opt(text),
        **{k: opt(count0) for k in device_ints},
        "max_sm_clock_mhz": opt(num), "power_limit_w": opt(num), "compute_capability": opt(text),
    })
    software = _obj(["torch"], {k: opt(text) for k in ("python", "torch", "cuda", "hip", "driver", "cuda_driver",
                                                       "platform")})
    telemetry = _obj(["samples", "throttled", "reasons"], {
        "source": opt(enum(calibration.TELEMETRY_SOURCES)), "samples": count0, "interval_s": opt(num),
        "clock_mhz": stats, "power_w": stats, "temperature_c": stats,
        "throttled": {"type": ["boolean", "null"]}, "reasons": strings,
    })

    # estimator/records/collectives.py: the `collectives` section (gpucost profile --comm)
    op, group, dtype = enum(collectives.OPS), enum(collectives.GROUPS), enum(collectives.COMM_DTYPES)
    ranks = {"type": "array", "items": count0, "uniqueItems": True}
    collective_row = _obj(list(_ROW_KEYS), {
        "op": op, "group": group, "num_ranks": count1, "dtype": dtype, "size_bytes": count1, "count": count1,
        "iterations": count1, "time_s": pos, "best_time_s": pos, "algbw_gbps": num, "busbw_gbps": num,
        "emulated": {"type": "boolean"}, "impl": text})
    collectives_section = _obj(
        ["schema_version", "benchmark_version", "created_utc", "command", "partial", "backend", "launcher",
         "world_size", "num_nodes", "mode", "dtypes", "groups", "ranks", "rows"], {
            "schema_version": {"const": collectives.SCHEMA_VERSION}, "benchmark_version": count1,
            "created_utc": text, "command": text, "partial": {"type": "boolean"}, "duration_s": opt(num),
            "timeout_s": opt(pos), "backend": enum(collectives.BACKENDS), "launcher": enum(collectives.LAUNCHERS),
            "world_size": count1, "num_nodes": count1, "mode": enum(collectives.MODES),
            "dtypes": {"type": "array", "items": dtype},
            "groups": {"type": "array", "items": _obj(["kind", "index", "ranks"], {
                "kind": group, "index": count0, "ranks": ranks, "host": opt(text)})},
            "ranks": {"type": "array", "items": _obj(["rank", "local_rank", "host", "device"], {
                "rank": count0, "local_rank": count0, "host": text, "device": text, "device_index": opt(count0),
                "pci_bus_id": opt(text), "pid": opt(count0)})},
            "rows": {"type": "array", "items": {"$ref": "#/$defs/collective_row"}},
            "skipped": opt({"type": "array", "items": _obj(["op", "group", "dtype", "reason"], {
                "op": op, "group": group, "dtype": dtype, "size_bytes": opt(count1), "reason": text})}),
            "cross_check": opt(_obj(["op", "group", "dtype", "size_bytes", "iterations", "method", "time_s",
                                     "busbw_gbps", "benchmark_busbw_gbps", "diff_pct"], {
                "op": op, "group": group, "dtype": dtype, "size_bytes": count1, "iterations": count1,
                "method": text, "time_s": pos, "busbw_gbps": num, "benchmark_busbw_gbps": num,
                "diff_pct": any_num})),
            "stragglers": opt(_obj(["benchmark", "margin_pct", "median_tflops", "spread_pct", "ranks", "flagged"], {
                "benchmark": _obj(["m", "n", "k", "dtype"], {"m": count1, "n": count1, "k": count1, "dtype": text}),
                "margin_pct": num, "median_tflops": num, "spread_pct": num,
                "ranks": {"type": "array", "items": _obj(
                    ["rank", "host", "best_tflops", "median_tflops", "iterations", "slowdown_pct", "slow",
                     "throttled"], {
                        "rank": count0, "host": text, "best_tflops": num, "median_tflops": num,
                        "iterations": count1, "slowdown_pct": any_num, "slow": {"type": "boolean"},
                        "throttled": {"type": ["boolean", "null"]}, "reasons": strings})},
                "flagged": ranks})),
            "summary": opt({"type": "array", "items": _obj(
                ["op", "group", "dtype", "num_ranks", "busbw_gbps", "large_size_bytes", "latency_s",
                 "small_size_bytes", "emulated"], {
                    "op": op, "group": group, "dtype": dtype, "num_ranks": count1, "busbw_gbps": num,
                    "large_size_bytes": count1, "latency_s": pos, "small_size_bytes": count1,
                    "emulated": {"type": "boolean"}})}),
            "notes": strings,
        })

    return {
        "$schema": DRAFT,
        "title": "gpucost calibration file",
        "description": "What `gpucost profile` measured on one device (schema_version 1; estimator/records/calibration.py "
                       "documents every field). Checked on read by gpucost, which also checks what a schema "
                       "cannot: worst <= median <= best, created_utc parses as a time, and in `collectives`, "
                       "algbw = size / time, busbw = algbw x the nccl-tests factor and ranks within world_size.",
        **_obj(["schema_version", "benchmark_version", "created_utc", "command", "partial", "device", "software",
                "telemetry", "matmul", "mlp", "bandwidth", "notes"], {
            "schema_version": {"const": calibration.SCHEMA_VERSION},
            "benchmark_version": count1,
            "created_utc": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}"},
            "command": text,
            "partial": {"type": "boolean"},
            "duration_s": opt(num),
            "device": device, "software": software, "telemetry": telemetry,
            "matmul": {**precisions, "additionalProperties": {"$ref": "#/$defs/matmul_entry"}},
            "mlp": {**precisions, "additionalProperties": {"$ref": "#/$defs/mlp_entry"}},
            "model": opt(model),
            "torch_model": opt(torch_model),
            "collectives": opt({"$ref": "#/$defs/collectives"}),
            "bandwidth": bandwidth,
            "notes": strings,
        }),
        "$defs": {
            "matmul_entry": precision_entry("matmul"), "shape": item(("m", "n", "k")),
            "mlp_entry": precision_entry("mlp"), "width": item(("width", "tokens", "params")),
            "model_result": model_result, "torch_model_result": torch_model_result,
            "collectives": collectives_section, "collective_row": collective_row,
        },
    }


_ROW_KEYS = ("op", "group", "num_ranks", "dtype", "size_bytes", "count", "iterations", "time_s", "best_time_s",
             "algbw_gbps", "busbw_gbps", "emulated", "impl")


def build_schemas() -> dict[str, dict[str, Any]]:
    """{file name in estimator/schemas/: schema}."""
    out = {f"{name}.schema.json": catalog_schema(name) for name, *_ in _catalog_specs()}
    out["calibration.schema.json"] = calibration_schema()
    return out


def _dump(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def _update() -> None:
    SCHEMAS.mkdir(exist_ok=True)
    for name, schema in build_schemas().items():
        (SCHEMAS / name).write_text(_dump(schema), encoding="utf-8")
        print(f"wrote {SCHEMAS.relative_to(ROOT) / name}")


if __name__ == "__main__" and "--update" in sys.argv:
    sys.path.insert(0, str(ROOT))
    _update()
    raise SystemExit(0)


# -- the tests -----------------------------------------------------------------------------------

import pytest  # noqa: E402

jsonschema = pytest.importorskip("jsonschema")

from calibration_samples import cpu_example, gpu_record  # noqa: E402

from estimator.records.calibration import validate_calibration  # noqa: E402
from estimator.catalog.fields import load_yaml_file  # noqa: E402
from estimator.errors import CatalogError  # noqa: E402


def _load(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / name).read_text(encoding="utf-8"))


def _validator(name: str) -> Any:
    schema = _load(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def as_json(value: Any) -> Any:
    """What an editor sees of a YAML document: dates as ISO strings (JSON has no date type)."""
    if isinstance(value, (_dt.date, _dt.datetime)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_json(v) for v in value]
    return value


def _strip_text(schema: Any) -> Any:
    """The schema without prose (description, title), which may change without regenerating."""
    if isinstance(schema, dict):
        return {k: _strip_text(v) for k, v in schema.items() if k not in ("description", "title")}
    if isinstance(schema, list):
        return [_strip_text(v) for v in schema]
    return schema


def test_every_catalog_file_has_a_schema_and_the_files_are_what_the_generator_writes():
    built = build_schemas()
    shipped = {p.name for p in SCHEMAS.glob("*.schema.json")}
    assert shipped == set(built), "run: python tests/test_schemas.py --update"
    for name, schema in built.items():
        assert _strip_text(_load(name)) == _strip_text(schema), \
            f"{name} is stale: python tests/test_schemas.py --update"
    covered = {file for _, file, *_ in _catalog_specs()}
    assert {p.name for p in CATALOGS.glob("*.yaml")} <= covered, \
        "a catalog file has no schema: add it to _catalog_specs"


@pytest.mark.parametrize("name", [s[0] for s in _catalog_specs()])
def test_shipped_catalog_is_valid_against_its_schema(name):
    spec = {s[0]: s for s in _catalog_specs()}[name]
    path = CATALOGS / spec[1]
    if not path.exists():
        pytest.skip(f"catalogs/{spec[1]} is not there yet")
    errors = sorted(_validator(f"{name}.schema.json").iter_errors(as_json(load_yaml_file(path))), key=str)
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5])


@pytest.mark.parametrize("path", sorted((ROOT / "docs" / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_example_calibration_files_are_valid(path):
    errors = list(_validator("calibration.schema.json").iter_errors(as_json(load_yaml_file(path))))
    assert not errors, errors[0].message


def test_the_sample_gpu_record_with_collectives_is_valid():
    validate_calibration(gpu_record())
    assert _validator("calibration.schema.json").is_valid(gpu_record())


@pytest.mark.parametrize(("schema", "file", "mutate"), [
    ("gpus", "gpus.yaml", lambda d: d["accelerators"][0].pop("tdp_w")),
    ("gpus", "gpus.yaml", lambda d: d["accelerators"][0].update(peak_tflops={"int4": 10})),
    ("gpus", "gpus.yaml", lambda d: d["accelerators"][0].update(peak_tflops={"bf16": -1})),
    ("gpus", "gpus.yaml", lambda d: d["accelerators"][0].update(memroy_gb=80)),
    ("gpus", "gpus.yaml", lambda d: d["accelerators"][0].update(retrieved="last week")),
    ("gpus", "gpus.yaml", lambda d: d.update(schema_version=2)),
    ("prices", "prices.yaml", lambda d: d["prices"][0].update(offer="cheap")),
    ("prices", "prices.yaml", lambda d: d["prices"][0].update(usd_per_gpu_hour="lots")),
    ("models", "models.yaml", lambda d: d["models"][0].update(params="1,5B")),
    ("models", "models.yaml", lambda d: d["models"][0].update(aliases="gpt3")),
    ("runs", "runs.yaml", lambda d: d["runs"][0].update(reported_mfu=1.5)),
    ("runs", "runs.yaml", lambda d: d["runs"][0].update(num_devices=0)),
    ("runs", "runs.yaml", lambda d: d["runs"][0].update(scope="most")),
    ("systems", "systems.yaml", lambda d: d["systems"][0].update(scale_up="carrier-pigeon")),
    ("layout_runs", "layout_runs.yaml", lambda d: d["layout_runs"][0].update(tensor_parallel=True)),
    ("datasets", "datasets.yaml", lambda d: d["datasets"][0].update(samples="many")),
    ("stacks", "stacks.yaml", lambda d: d["stacks"][0].update(engine="magic")),
    ("stacks", "stacks.yaml", lambda d: d["stacks"][-1].update(attention_fraction=1.5)),
    ("stack_runs", "stack_runs.yaml", lambda d: d["stack_runs"][0].update(split="both")),
])
def test_broken_catalogs_are_rejected(schema, file, mutate):
    if not (CATALOGS / file).exists():
        pytest.skip(f"catalogs/{file} is not there yet")
    data = as_json(load_yaml_file(CATALOGS / file))
    mutate(data)
    assert not _validator(f"{schema}.schema.json").is_valid(data)


def _loader_accepts(path: Path, key: str, cls: type, enums: dict[str, tuple[str, ...]]) -> bool:
    """estimator.catalog's per-file loader, then the enumerated-field checks that Catalog and
    estimator.catalog.systems make after it (with the same tuples; test_broken_catalogs_are_rejected_by_the_loader
    checks that those are made)."""
    from estimator.catalog.fields import _records

    try:
        records = _records(path, key, cls)
    except CatalogError:
        return False
    return all(getattr(r, name) is None or getattr(r, name) in allowed
               for r in records for name, allowed in enums.items())


def test_catalog_schemas_follow_the_loader_on_mutated_entries(tmp_path, monkeypatch):
    """Every field of one entry per file, set to each of a few wrong values, deleted, and an unknown
    field: jsonschema and the loader agree on each."""
    from estimator.catalog import fields as catalog

    documents: dict[str, Any] = {}  # the loader reads these instead of parsing a file each time
    monkeypatch.setattr(catalog, "load_yaml_file", lambda file, label=None, cache=False: copy.deepcopy(documents[Path(file).name]))
    disagreements, checked = [], 0
    for name, file, key, cls, enums in _catalog_specs():
        path = CATALOGS / file
        if not path.exists():
            continue
        validator = _validator(f"{name}.schema.json")
        entry = as_json(load_yaml_file(path))[key][0]
        candidates = [None, "", "x", "175B", "0.5", -1, 0, 1, 0.5, True, [], ["a"], [""], {}, {"bf16": 1.0},
                      "2026-01-01"]
        cases = [(f"{field}={value!r}", {**entry, field: value}) for field in entry for value in candidates]
        cases += [(f"-{field}", {k: v for k, v in entry.items() if k != field}) for field in entry]
        cases.append(("+unknown", {**entry, "unknwon_field": 1}))
        for label, mutated in cases:
            documents[file] = {"schema_version": 1, key: [mutated]}
            loader_ok = _loader_accepts(tmp_path / file, key, cls, enums)
            schema_ok = validator.is_valid(documents[file])
            checked += 1
            if loader_ok != schema_ok:
                disagreements.append(f"{file} {label}: loader {'accepts' if loader_ok else 'rejects'}, "
                                     f"schema {'accepts' if schema_ok else 'rejects'}")
    assert checked > 500
    assert not disagreements, "\n".join(disagreements[:20])


def test_broken_catalogs_are_rejected_by_the_loader(tmp_path):
    """The enumerated fields are checked by the full load (Catalog, estimator.catalog.systems), as the
    schemas say."""
    import shutil

    import yaml

    from estimator.catalog import core as catalog, systems

    cases = [("prices.yaml", "prices", "offer", "cheap"), ("runs.yaml", "runs", "scope", "most"),
             ("systems.yaml", "systems", "scale_up", "carrier-pigeon"),
             ("layout_runs.yaml", "layout_runs", "recompute", "sometimes")]
    for file, key, field, value in cases:
        if not (CATALOGS / file).exists():
            continue
        folder = tmp_path / f"{file}-{field}"
        shutil.copytree(CATALOGS, folder)
        data = load_yaml_file(folder / file)
        data[key][0][field] = value
        (folder / file).write_text(yaml.safe_dump(data), encoding="utf-8")
        with pytest.raises(CatalogError, match=field):
            catalog._load.cache_clear()
            assert catalog.load_catalog(folder).runs is not None  # runs may load on first use
            systems.load_systems(folder)
            systems.load_layout_runs(folder)
    catalog._load.cache_clear()


def test_quantity_pattern_follows_parse_quantity():
    from estimator.errors import InputError
    from estimator.numbers import parse_quantity

    pattern = re.compile(QUANTITY_PATTERN)
    for text in ("175B", "14.8T", "2.664M", "1e21", "1.5e+11", "1,500", "1_000_000", "$3", " 7B ", ".5K", "+2", "3g",
                 "1,5", "1e", "lots", "-5", "1.2.3", "5 X", "", "inf", "nan", "1,50"):
        try:
            parse_quantity(text)
            accepted = True
        except InputError:
            accepted = False
        assert bool(pattern.match(text)) == accepted, text


# -- the calibration schema against the validator ------------------------------------------------

# Fields whose rules relate several fields (worst <= median <= best, algbw = size / time, ranks below
# world_size, ...) or parse text (created_utc): the schema accepts some values the validator refuses.
CROSS_FIELD = {"best_tflops", "median_tflops", "worst_tflops", "created_utc", "time_s", "best_time_s", "algbw_gbps",
               "busbw_gbps", "size_bytes", "num_ranks", "world_size", "num_nodes", "rank", "ranks", "flagged"}
WRONG_VALUES = [None, "", "x", -1, 0, 2, 0.5, True, [], ["x"], {}, {"bf16": {}}]
# Values the validator accepts because Python compares True == 1 and 0 == False; the schema refuses
# them (reported; drop an entry here when the validator is fixed).
VALIDATOR_LAXNESS = {"collectives.schema_version = True"}


def _trimmed(doc: Any) -> Any:
    """The document with its repeats cut (jsonschema takes milliseconds per document): two items per
    measurement list, and per section one measured dtype and one skipped."""
    doc = copy.deepcopy(doc)
    for section in ("matmul", "mlp"):
        kept: dict[str, Any] = {}
        for dtype, entry in doc.get(section, {}).items():
            kind = "skipped" if "best_tflops" not in entry else "measured"
            if kind not in {"skipped" if "best_tflops" not in e else "measured" for e in kept.values()}:
                kept[dtype] = entry
            for key in ("shapes", "widths"):
                if key in entry:
                    entry[key] = entry[key][:2]
        doc[section] = kept
    if doc.get("collectives"):
        doc["collectives"]["rows"] = doc["collectives"]["rows"][:2]
    return doc


def _paths(value: Any, path: tuple = ()) -> list[tuple]:
    """Every key path and list index path in a document."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            found.append(path + (key,))
            found += _paths(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value[:2]):  # two items of each list are enough
            found += _paths(item, path + (index,))
    return found


def _set(doc: Any, path: tuple, value: Any, delete: bool = False) -> None:
    for step in path[:-1]:
        doc = doc[step]
    if delete:
        del doc[path[-1]]
    else:
        doc[path[-1]] = value


def _validator_accepts(doc: Any) -> bool:
    try:
        validate_calibration(doc)
    except CatalogError:
        return False
    except (TypeError, KeyError, AttributeError, ValueError) as exc:  # the validator itself failed
        pytest.fail(f"validate_calibration raised {type(exc).__name__}: {exc}")
    return True


@pytest.mark.parametrize("sample", ["cpu-example", "gpu-with-collectives"])
def test_calibration_schema_and_validator_agree_on_mutated_documents(sample):
    """Each key deleted, each value replaced by each of WRONG_VALUES, an unknown key in each
    mapping: whatever the validator accepts the schema accepts (an editor never flags a good file),
    and whatever it refuses the schema refuses too, except for the cross-field rules."""
    base = _trimmed(as_json(cpu_example()) if sample == "cpu-example" else gpu_record())
    # the GPU sample adds the collectives section, the GPU-only device fields and the sustained windows
    # to what the CPU one covers
    wanted = ("",) if sample == "cpu-example" else ("collectives", "device", "matmul", "mlp")
    schema = _validator("calibration.schema.json")
    too_strict, too_loose, checked = [], [], 0
    for path in _paths(base):
        if isinstance(path[-1], int) or not str(path[0]).startswith(wanted):
            continue
        mutations = [("deleted", None, True)] + [(f"= {v!r}", v, False) for v in WRONG_VALUES]
        for label, value, delete in mutations:
            doc = copy.deepcopy(base)
            _set(doc, path, copy.deepcopy(value), delete)
            accepted, valid = _validator_accepts(doc), schema.is_valid(doc)
            checked += 1
            where = ".".join(map(str, path))
            if accepted and not valid:
                too_strict.append(f"{where} {label}")
            elif valid and not accepted and path[-1] not in CROSS_FIELD:
                too_loose.append(f"{where} {label}")
    for path in [()] + [p for p in _paths(base) if isinstance(_get(base, p), dict) and str(p[0]).startswith(wanted)]:
        doc = copy.deepcopy(base)
        target = _get(doc, path)
        target["unknwon"] = 1
        checked += 1
        if schema.is_valid(doc) != _validator_accepts(doc):
            (too_strict if _validator_accepts(doc) else too_loose).append(f"{'.'.join(map(str, path))} +unknwon")
    assert checked > 300
    too_strict = [case for case in too_strict if case not in VALIDATOR_LAXNESS]
    assert not too_strict, "the schema refuses what gpucost accepts:\n" + "\n".join(too_strict[:20])
    assert not too_loose, "the schema accepts what gpucost refuses:\n" + "\n".join(too_loose[:20])


def _get(doc: Any, path: tuple) -> Any:
    for step in path:
        doc = doc[step]
    return doc


@pytest.mark.parametrize("mutate", [
    lambda d: d.pop("device"),
    lambda d: d["device"].update(backend="tpu"),
    lambda d: d["matmul"].update(int8={"skipped": "no"}),
    lambda d: d["matmul"]["fp32"].update(best_tflops="fast"),
    lambda d: d["matmul"]["fp32"]["shapes"][0].pop("iterations"),
    lambda d: d["telemetry"].update(throttled="maybe"),
    lambda d: d.update(schema_version=2),
    lambda d: d.update(notes="one note"),
    lambda d: d["model"]["results"]["fp32"].pop("flops_per_token"),
], ids=["no device", "unknown backend", "unknown dtype", "tflops a string", "shape without iterations",
        "throttled a string", "schema_version 2", "notes not a list", "model result without flops_per_token"])
def test_broken_calibration_documents_are_rejected_by_both(mutate):
    doc = as_json(cpu_example())
    mutate(doc)
    assert not _validator("calibration.schema.json").is_valid(doc)
    with pytest.raises(CatalogError):
        validate_calibration(doc)


def test_schemas_are_shipped_in_the_wheel_config():
    """estimator/schemas/ lies inside the package folder hatch puts in the wheel."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'packages = \[[^\]]*"estimator"', text)
    assert (ROOT / "estimator" / "py.typed").exists() and (ROOT / "profiler" / "py.typed").exists()
