"""A deterministic generator of malformed FineTuneJob files (seeded; no fuzzing library).

`corpus()` is every case: value-level ones from here (wrong types, numbers, unknown keys,
trailing newlines, names) and text-level ones from fuzz_yaml (encodings, nesting, aliases,
sizes, duplicate keys, documents, tags, byte mutations). See tests/support/fuzz/base.py: Case.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from typing import Any

from tests.support.fuzz import yaml_docs as fuzz_yaml
from tests.support.fuzz.base import (
    SEED,
    Case,
    dump,
    examples,
    get_at,
    leaves,
    mappings,
    set_at,
    short_path,
)

WRONG = ["10", "true", True, False, 1.5, 7, -1, [], {}, [1, 2], {"a": 1}, None, "", "x" * 300]
BAD_NUMBERS = [
    ".inf",
    "-.inf",
    ".nan",
    ".NaN",
    "1e999",
    "-1e999",
    str(2**63),
    str(-(2**63) - 1),
    "9" * 400,
    "1e-400",
    "-0",
    "0x7fffffffffffffffff",
]
BAD_NAMESPACES = [
    "../../x",
    "",
    "-a",
    "a-",
    "a" * 64,
    "Team",
    "a_b",
    "a.b",
    "ns\n",
    " ns",
    "..",
    "/",
    "ns/..",
    "kube system",
    "ns\x00",
    "ñ",
]
BAD_NAMES = ["../x", "a" * 41, "1job", "Job", "job_", "job\n", "job.x", "-job", "", "job/x"]


def _wrong_types(examples: list[tuple[str, str, dict[str, Any]]]) -> Iterator[Case]:
    rng = random.Random(SEED)
    for stem, _, doc in examples:
        spec_leaves = [p for p, _ in leaves(doc) if p and p[0] == "spec"]
        for path in rng.sample(spec_leaves, min(len(spec_leaves), 14)):
            value = rng.choice(WRONG)
            yield Case(
                f"type-{stem}-{short_path(path)}-{type(value).__name__}",
                lambda d=doc, p=path, v=value: dump(set_at(d, p, v)),
                invalid=None,
            )


_MARKER = "__FUZZ_NUMBER__"


def _numbers(examples: list[tuple[str, str, dict[str, Any]]]) -> Iterator[Case]:
    rng = random.Random(SEED + 1)
    for stem, text, doc in examples:
        numeric = [
            p for p, v in leaves(doc) if isinstance(v, (int, float)) and not isinstance(v, bool)
        ]
        for i, path in enumerate(rng.sample(numeric, min(len(numeric), 6))):
            bad = BAD_NUMBERS[(i + len(stem)) % len(BAD_NUMBERS)]
            # Textual substitution so the YAML holds exactly the spelling under test.

            def make(d: dict[str, Any] = doc, p: tuple[Any, ...] = path, b: str = bad) -> bytes:
                return dump(set_at(d, p, _MARKER)).replace(_MARKER.encode(), b.encode())

            # -0 and 1e-400 (0.0) are finite: they may be valid (or out of range).
            yield Case(
                f"number-{stem}-{short_path(path)}-{bad[:12]}",
                make,
                invalid=None if bad in ("-0", "1e-400") else True,
            )
        for j, big in enumerate(("9" * 5000, "-" + "9" * 5000, "1" + "0" * 19, "1_" * 2000 + "1")):
            yield Case(
                f"hugeint-{stem}-{j}",
                lambda t=text, b=big: (
                    re.sub(r"(?m)^(\s+maxSteps|\s+seed): .*$", rf"\1: {b}", t, count=1).encode()
                    + f"\n# {b[:10]}\n".encode()
                ),
                invalid=None,
            )


def _unknown_keys(examples: list[tuple[str, str, dict[str, Any]]]) -> Iterator[Case]:
    rng = random.Random(SEED + 4)
    for stem, _, doc in examples:
        maps = [
            p
            for p in mappings(doc)
            if p
            and p[0] == "spec"
            and p[-1] not in ("fieldMap", "nodeSelector", "labels", "annotations")
        ]
        for path in rng.sample(maps, min(len(maps), 4)):
            target = get_at(doc, path)
            key = rng.choice(["bogus", "x-extra", "enabled2", "ñ", "0", "spec", "__class__"])
            yield Case(
                f"unknown-{stem}-{short_path(path)}-{key}",
                lambda p=path, k=key, t=target, d=doc: dump(set_at(d, p, {**t, k: 1})),
            )
        camel = [
            (p, v)
            for p, v in leaves(doc)
            if p
            and p[0] == "spec"
            and isinstance(p[-1], str)
            and re.search(r"[a-z][A-Z]", p[-1])
            and not {"fieldMap", "nodeSelector"} & set(p[:-1])
        ]
        for path, value in rng.sample(camel, min(len(camel), 3)):
            snake = re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), path[-1])

            def make(
                p: tuple[Any, ...] = path, v: Any = value, s: str = snake, d: Any = doc
            ) -> bytes:
                parent = dict(get_at(d, p[:-1]))
                parent.pop(p[-1])
                parent[s] = v
                return dump(set_at(d, p[:-1], parent))

            yield Case(f"snake-{stem}-{short_path(path)}", make)
        yield Case(
            f"unknown-{stem}-metadata", lambda d=doc: dump(set_at(d, ("metadata", "nmae"), "x"))
        )
        yield Case(f"unknown-{stem}-root", lambda d=doc: dump({**d, "extra": {"a": 1}}))


def _trailing(examples: list[tuple[str, str, dict[str, Any]]]) -> Iterator[Case]:
    rng = random.Random(SEED + 5)
    names = (
        "name",
        "namespace",
        "base",
        "source",
        "uri",
        "mlflowUri",
        "registerAs",
        "credentialsSecret",
        "s3Endpoint",
        "queueName",
        "image",
        "ggufFile",
        "tokenizer",
        "pushgatewayUrl",
        "memory",
        "cpu",
        "shmSize",
        "gpuType",
    )
    for stem, _, doc in examples:
        strings = [p for p, v in leaves(doc) if isinstance(v, str) and p[-1] in names]
        for path in strings:
            suffix = rng.choice(["\n", "\r\n", "\n\n", "\x00", "\t", "\u2028", "\x85"])
            value = get_at(doc, path) + suffix
            yield Case(
                f"newline-{stem}-{short_path(path)}-{ord(suffix[0]):x}",
                lambda p=path, v=value, d=doc: dump(set_at(d, p, v)),
            )
    _, _, doc = examples[0]
    extra = [
        (("spec", "tracking"), {"mlflowUri": "http://m:5000", "registerAs": "m\n"}),
        (("spec", "tracking"), {"mlflowUri": "http://m:5000", "registerAs": "../../x"}),
        (("spec", "tracking"), {"mlflowUri": "http://m:5000", "registerAs": "/abs"}),
        (("spec", "tracking"), {"mlflowUri": "http://m:5000\n"}),
        (("spec", "metrics"), {"pushgatewayUrl": "http://p:9091\n"}),
        (("spec", "resources"), {"image": "repo/x:1\n"}),
        (("spec", "resources"), {"image": "repo/x@sha256:" + "a" * 63}),
        (("spec", "resources"), {"image": "Repo/X"}),
        (("spec", "resources"), {"image": "repo x"}),
        (("spec", "resources"), {"image": "repo/x:" + "t" * 200}),
        (("spec", "model", "ggufFile"), "../evil.gguf"),
        (("spec", "model", "revision"), "main\n"),
    ]
    for i, (path, value) in enumerate(extra):
        yield Case(f"newline-extra-{i}", lambda p=path, v=value: dump(set_at(doc, p, v)))


def _namespaces_and_names(examples: list[tuple[str, str, dict[str, Any]]]) -> Iterator[Case]:
    _, _, doc = examples[0]
    for i, ns in enumerate(BAD_NAMESPACES):
        yield Case(f"namespace-{i}", lambda v=ns: dump(set_at(doc, ("metadata", "namespace"), v)))
    for ns in (5, True, None, ["a"], {"a": 1}):
        yield Case(
            f"namespace-type-{type(ns).__name__}",
            lambda v=ns: dump(set_at(doc, ("metadata", "namespace"), v)),
        )
    for i, name in enumerate(BAD_NAMES):
        yield Case(f"name-{i}", lambda v=name: dump(set_at(doc, ("metadata", "name"), v)))
    labels = [
        {"bad key": "v"},
        {"a/b/c": "v"},
        {"x": "bad value"},
        {"x": "v" * 64},
        {"-x": "v"},
        {"Example.COM/x": "v"},
        {"x": 5},
    ]
    for i, lab in enumerate(labels):
        yield Case(f"labels-{i}", lambda v=lab: dump(set_at(doc, ("metadata", "labels"), v)))
    ports = [
        {"metrics": {"port": 29500}},
        {"distributed": {"masterPort": 9400}},
        {"metrics": {"port": 80}},
        {"metrics": {"port": 70000}},
    ]
    for i, change in enumerate(ports):
        ((key, value),) = change.items()
        yield Case(f"ports-{i}", lambda k=key, v=value: dump(set_at(doc, ("spec", k), v)))
    quantities = ["16 GB", "-1", "1.5.5Gi", "Gi", "1Gi\n", "1gi", "1e", "∞"]
    for i, q in enumerate(quantities):
        yield Case(
            f"quantity-{i}", lambda v=q: dump(set_at(doc, ("spec", "resources"), {"memory": v}))
        )


def corpus() -> list[Case]:
    ex = examples()
    cases = [
        *_wrong_types(ex),
        *_numbers(ex),
        *fuzz_yaml.encodings(ex),
        *fuzz_yaml.nesting(),
        *fuzz_yaml.aliases(),
        *fuzz_yaml.sizes(ex),
        *fuzz_yaml.duplicates(ex),
        *_unknown_keys(ex),
        *_trailing(ex),
        *_namespaces_and_names(ex),
        *fuzz_yaml.documents(ex),
        *fuzz_yaml.tags(ex),
        *fuzz_yaml.mutations(ex),
    ]
    ids = [c.id for c in cases]
    dupes = {i for i in ids if ids.count(i) > 1}
    assert not dupes, sorted(dupes)[:5]
    return cases
