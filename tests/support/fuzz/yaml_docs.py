"""Text-level malformed FineTuneJob files: encodings, nesting, aliases, sizes, duplicate
keys, documents, tags and byte mutations (seeded, deterministic; see Case in base.py)."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from typing import Any

from tests.support.fuzz.base import SEED, Case, dump, set_at, short_path


def encodings(examples: list[tuple[str, str, dict[str, Any]]]) -> Iterator[Case]:
    rng = random.Random(SEED + 2)
    for stem, text, _ in examples:
        raw = text.encode()
        at = rng.randrange(len(raw) // 2, len(raw))
        yield Case(f"enc-{stem}-invalid-utf8", lambda r=raw, a=at: r[:a] + b"\xff\xfe\xfd" + r[a:])
        yield Case(f"enc-{stem}-surrogate", lambda r=raw, a=at: r[:a] + b"\xed\xa0\x80" + r[a:])
        yield Case(f"enc-{stem}-overlong", lambda r=raw, a=at: r[:a] + b"\xc0\xaf" + r[a:])
        yield Case(f"enc-{stem}-nul", lambda r=raw, a=at: r[:a] + b"\x00" + r[a:])
        yield Case(f"enc-{stem}-ctrl", lambda r=raw, a=at: r[:a] + b"\x1b[2J" + r[a:])
        yield Case(f"enc-{stem}-utf16", lambda t=text: t.encode("utf-16"))
        yield Case(f"enc-{stem}-utf16be", lambda t=text: b"\xfe\xff" + t.encode("utf-16-be"))
        yield Case(f"enc-{stem}-utf32", lambda t=text: t.encode("utf-32"))
        yield Case(f"enc-{stem}-latin1", lambda t=text: (t + "# café\n").encode("latin-1"))
        yield Case(f"enc-{stem}-bom-utf8", lambda r=raw: b"\xef\xbb\xbf" + r, invalid=False)
        yield Case(f"enc-{stem}-double-bom", lambda r=raw: b"\xef\xbb\xbf" * 2 + r, invalid=None)
        yield Case(f"enc-{stem}-truncated", lambda r=raw, a=at: r[:a], invalid=None)
        yield Case(f"enc-{stem}-crlf", lambda r=raw: r.replace(b"\n", b"\r\n"), invalid=False)
        yield Case(f"enc-{stem}-cr-only", lambda r=raw: r.replace(b"\n", b"\r"), invalid=None)
        yield Case(f"enc-{stem}-tabs", lambda r=raw: r.replace(b"  ", b"\t"))


def nesting() -> Iterator[Case]:
    head = (
        "apiVersion: kubetune.io/v1alpha1\nkind: FineTuneJob\nmetadata: {name: deep}\n"
        "spec:\n  model: {base: builtin:tiny-llama}\n  dataset: {source: d.jsonl}\n"
    )
    for depth in (33, 64, 500, 5_000, 100_000, 400_000):
        for where in ("status", "metadata", "spec.dataset.fieldMap"):
            key = where.rsplit(".", 1)[-1]
            yield Case(
                f"deep-flow-list-{where}-{depth}",
                lambda d=depth, k=key: (head + f"{k}: " + "[" * d + "]" * d + "\n").encode(),
            )
            yield Case(
                f"deep-flow-map-{where}-{depth}",
                lambda d=depth, k=key: (
                    head + f"{k}: " + "{a: " * d + "1" + "}" * d + "\n"
                ).encode(),
            )
        if depth <= 5_000:
            yield Case(
                f"deep-block-{depth}",
                lambda d=depth: (
                    head
                    + "status:\n"
                    + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(d))
                    + " " * (d + 1)
                    + "x\n"
                ).encode(),
            )
            yield Case(
                f"deep-block-list-{depth}",
                lambda d=depth: (
                    head + "status:\n" + "".join(" " * (2 * i + 1) + "-\n" for i in range(d))
                ).encode(),
            )
    yield Case("deep-unclosed", lambda: (head + "status: " + "[" * 100_000).encode())
    yield Case("deep-json", lambda: b'{"a":' * 50_000 + b"1" + b"}" * 50_000, ".json")
    yield Case("deep-json-list", lambda: b"[" * 300_000 + b"]" * 300_000, ".json")


def _lol(levels: int, width: int, indent: str) -> str:
    lines = [f"{indent}l0: &l0 [" + ",".join(['"lol"'] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"{indent}l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def aliases() -> Iterator[Case]:
    head = "apiVersion: kubetune.io/v1alpha1\nkind: FineTuneJob\n"
    spec = "spec:\n  model: {base: builtin:tiny-llama}\n  dataset: {source: d.jsonl}\n"
    for levels, width in ((9, 9), (6, 20), (30, 2), (4, 100), (64, 2)):
        bomb = _lol(levels, width, "    ")
        yield Case(
            f"bomb-metadata-{levels}x{width}",
            lambda b=bomb: (head + "metadata:\n  name: bomb\n  annotations:\n" + b + spec).encode(),
        )
        yield Case(
            f"bomb-labels-{levels}x{width}",
            lambda b=bomb: (head + "metadata:\n  name: bomb\n  labels:\n" + b + spec).encode(),
        )
        yield Case(
            f"bomb-status-{levels}x{width}",
            lambda b=bomb: (
                head + "metadata: {name: bomb}\n" + spec + "status:\n" + b.replace("    ", "  ")
            ).encode(),
        )
        yield Case(
            f"bomb-fieldmap-{levels}x{width}",
            lambda b=bomb: (
                head
                + "metadata: {name: bomb}\n"
                + spec.replace(
                    "  dataset: {source: d.jsonl}\n",
                    "  dataset:\n    source: d.jsonl\n    fieldMap:\n",
                )
                + b.replace("    ", "      ")
            ).encode(),
        )
        yield Case(f"bomb-root-{levels}x{width}", lambda b=bomb: b.replace("    ", "").encode())
    big = "x" * 200_000
    yield Case(
        "alias-big-string-x1000",
        lambda: (
            head
            + "metadata: {name: a}\n"
            + spec
            + f"status:\n  s: &s {big}\n"
            + "".join(f"  k{i}: *s\n" for i in range(1000))
        ).encode(),
    )
    yield Case(
        "alias-recursive-list", lambda: (head + "metadata: &m {name: a, x: [*m]}\n").encode()
    )
    yield Case("alias-recursive-self", lambda: b"&a [*a]\n")
    yield Case(
        "alias-recursive-map",
        lambda: (head + "metadata: {name: a}\n" + spec + "status: &s {a: {b: *s}}\n").encode(),
    )
    yield Case("alias-undefined", lambda: (head + "metadata: {name: *nope}\n" + spec).encode())
    yield Case("alias-as-key", lambda: (head + "metadata: {name: &k a, *k : b}\n").encode())
    yield Case(
        "alias-merge-bomb",
        lambda: (
            head
            + "metadata:\n  name: m\n  annotations:\n"
            + _lol(8, 9, "    ")
            + "    m: {<<: [*l7, *l7]}\n"
            + spec
        ).encode(),
    )
    yield Case(
        "alias-ok",
        lambda: (
            head + "metadata: {name: ok-alias}\nspec:\n  model: "
            "{base: &b builtin:tiny-llama}\n  dataset: {source: &d "
            "d.jsonl, validation: {source: *d}}\n"
        ).encode(),
        invalid=False,
    )


def sizes(examples: list[tuple[str, str, dict[str, Any]]]) -> Iterator[Case]:
    _, text, doc = examples[0]
    n = 2 * 1024 * 1024
    yield Case(
        "size-8mb-list", lambda: (text + "status:\n  x: [" + "1," * 4_000_000 + "1]\n").encode()
    )
    yield Case(
        "size-1.9mb-list", lambda: (text + "status:\n  x: [" + "1," * 900_000 + "1]\n").encode()
    )
    yield Case(
        "size-block-list-100k", lambda: (text + "status:\n  x:\n" + "  - 1\n" * 100_000).encode()
    )
    yield Case("size-over-limit-comment", lambda: (text + "#" + "x" * n + "\n").encode())
    yield Case(
        "size-exactly-limit",
        lambda: (text + "#" + "x" * (n - len(text.encode()) - 2) + "\n").encode(),
        invalid=False,
    )
    for path in (
        ("metadata", "name"),
        ("metadata", "namespace"),
        ("spec", "model", "base"),
        ("spec", "dataset", "source"),
        ("spec", "output", "uri"),
        ("spec", "dataset", "systemPrompt"),
        ("spec", "tracking", "experiment"),
    ):
        # Dumped with a marker, then substituted: PyYAML's emitter is slow on 2 MB scalars.
        yield Case(
            f"size-string-1.9mb-{short_path(path)}",
            lambda p=path: dump(set_at(doc, p, "__BIG__")).replace(b"__BIG__", b"a" * 1_900_000),
            invalid=None if path[-1] in ("systemPrompt", "experiment") else True,
        )
    yield Case(
        "size-key-1.9mb",
        lambda: (text.rstrip("\n") + "\n  ? " + "k" * 1_900_000 + "\n  : 1\n").encode(),
    )
    yield Case(
        "size-100k-keys",
        lambda: (text + "status:\n" + "".join(f"  k{i}: 1\n" for i in range(100_000))).encode(),
    )
    yield Case(
        "size-target-modules-20k",
        lambda: dump(
            set_at(doc, ("spec", "adapter", "targetModules"), [f"m{i}" for i in range(20_000)])
        ),
        invalid=None,
    )
    yield Case(
        "size-tolerations-5k-bad",
        lambda: dump(
            set_at(
                doc,
                ("spec", "resources"),
                {"tolerations": [{"key": f"k{i}", "bogus": i} for i in range(5_000)]},
            )
        ),
    )
    yield Case(
        "size-annotations-huge",
        lambda: dump(
            set_at(doc, ("metadata", "annotations"), {f"a{i}": "v" * 1000 for i in range(1500)})
        ),
    )
    yield Case("size-long-line-json", lambda: b'{"a": "' + b"x" * 1_900_000 + b'"}', ".json")


def duplicates(examples: list[tuple[str, str, dict[str, Any]]]) -> Iterator[Case]:
    rng = random.Random(SEED + 3)
    for stem, text, _ in examples:
        lines = text.splitlines(keepends=True)
        keyed = [
            i
            for i, ln in enumerate(lines)
            if re.match(r"^\s*[A-Za-z]+:( |$)", ln) and not ln.rstrip().endswith(":")
        ]
        for i in rng.sample(keyed, min(len(keyed), 4)):
            yield Case(
                f"dup-{stem}-line{i}",
                lambda ls=lines, i=i: "".join([*ls[: i + 1], ls[i], *ls[i + 1 :]]).encode(),
            )
    yield Case("dup-top-spec", lambda: (examples[0][1] + "spec: {}\n").encode())
    yield Case("dup-json", lambda: b'{"kind": "FineTuneJob", "kind": "FineTuneJob"}', ".json")
    yield Case("dup-quoted-vs-plain", lambda: b'metadata: {name: a, "name": b}\n')
    yield Case("dup-merge-and-key", lambda: b"a: &a {x: 1}\nb: {<<: *a, <<: *a}\n")


def documents(examples: list[tuple[str, str, dict[str, Any]]]) -> Iterator[Case]:
    _, text, doc = examples[0]
    empties = [
        "",
        "\n",
        "---\n",
        "---\n...\n",
        "# just a comment\n",
        "~\n",
        "null\n",
        "---\n---\n",
        "\ufeff",
        " \t \n",
    ]
    for i, e in enumerate(empties):
        yield Case(f"empty-{i}", lambda v=e: v.encode())
    yield Case("empty-json", lambda: b"", ".json")
    yield Case("multi-two-valid", lambda: (text + "---\n" + text).encode(), invalid=False)
    yield Case(
        "multi-valid-invalid", lambda: (text + "---\n" + text.replace("kind:", "kinx:")).encode()
    )
    yield Case("multi-100-invalid", lambda: ("---\nkind: X\n" * 100).encode())
    yield Case("multi-1000-separators", lambda: ("---\n" * 1000).encode())
    yield Case("multi-10k-docs", lambda: ("--- 1\n" * 10_000).encode())
    minimal = (
        "---\napiVersion: kubetune.io/v1alpha1\nkind: FineTuneJob\n"
        "metadata: {name: a-fairly-long-job-name}\n"
        "spec: {model: {base: builtin:tiny-llama}, dataset: {source: d.jsonl}}\n"
    )
    yield Case("multi-1000-valid-minimal", lambda: (minimal * 1000).encode(), invalid=False)
    yield Case("multi-50-valid", lambda: ("---\n" + text).encode() * 50, invalid=False)
    roots = [
        "[]\n",
        "- a\n- b\n",
        "42\n",
        "hello\n",
        "'a string'\n",
        "true\n",
        "!!binary aGk=\n",
        "[1, 2, 3]\n",
        "&a x\n",
        "{}\n",
        "1.5\n",
        ".inf\n",
        "!!python/object:os.system {}\n",
        "!custom {a: 1}\n",
        "? [a, b]\n: c\n",
        "2024-01-01\n",
    ]
    for i, r in enumerate(roots):
        yield Case(f"root-{i}", lambda v=r: v.encode())
    yield Case("root-json-list", lambda: b"[1, 2]", ".json")
    yield Case("root-json-string", lambda: b'"FineTuneJob"', ".json")
    syntax = [
        "spec: [unclosed\n",
        "a:\n\tb: 1\n",
        "a: b: c\n",
        "a: 'unterminated\n",
        "- a\nb: c\n",
        "a: {b: 1,, c: 2}\n",
        "a: |\n bad\n  indent\nb",
        "%YAML 9.9\n---\na\n",
        "%TAG ! tag:evil,2000:\n--- !x {}\n",
        "a: @reserved\n",
        "a: `x`\n",
        "{" * 3 + "\n",
    ]
    for i, s in enumerate(syntax):
        yield Case(f"syntax-{i}", lambda v=s: (text + v).encode())
    for i, s in enumerate(syntax):
        yield Case(f"syntax-alone-{i}", lambda v=s: v.encode())
    yield Case("json-valid", lambda: __import__("json").dumps(doc).encode(), ".json", invalid=False)
    yield Case(
        "json-nan",
        lambda: (
            __import__("json")
            .dumps(set_at(doc, ("spec", "training", "learningRate"), float("nan")))
            .encode()
        ),
        ".json",
    )
    yield Case("json-trailing-comma", lambda: b'{"kind": "FineTuneJob",}', ".json", invalid=True)
    yield Case("json-as-yaml", lambda: __import__("json").dumps(doc).encode(), invalid=False)


def tags(examples: list[tuple[str, str, dict[str, Any]]]) -> Iterator[Case]:
    _, text, _ = examples[0]
    tags = [
        "!!binary aGVsbG8=",
        "!!set {a, b}",
        "!!omap [a: 1]",
        "!!timestamp 2024-01-01",
        "!!python/name:os.system",
        "!!python/object/apply:os.system [id]",
        "!local x",
        "!<tag:yaml.org,2002:str> x",
        "!!float abc",
        "!!int 1.5",
        "!!bool maybe",
        "!!null x",
        "!!int " + "9" * 100,
        "!!float 1e999",
        "!!str 5",
        "!!map [1]",
    ]
    for i, t in enumerate(tags):
        valid_str = t.startswith(("!<tag:yaml.org,2002:str>", "!!str"))
        yield Case(
            f"tag-{i}",
            lambda v=t: (text + f"status:\n  x: {v}\n").encode(),
            invalid=None if valid_str else True,
        )


def mutations(examples: list[tuple[str, str, dict[str, Any]]]) -> Iterator[Case]:
    rng = random.Random(SEED + 6)
    for stem, text, _ in examples:
        raw = text.encode()
        for k in range(8):
            edits = [
                (rng.randrange(len(raw)), rng.randrange(256)) for _ in range(rng.randint(1, 6))
            ]

            def make(r: bytes = raw, e: list[tuple[int, int]] = edits) -> bytes:
                b = bytearray(r)
                for pos, byte in e:
                    b[pos] = byte
                return bytes(b)

            yield Case(f"mutate-{stem}-{k}", make, invalid=None)
        lines = text.splitlines(keepends=True)
        for k in range(3):
            i, j = sorted(rng.sample(range(len(lines)), 2))
            yield Case(
                f"shuffle-{stem}-{k}",
                lambda ls=lines, i=i, j=j: "".join(
                    ls[:i] + ls[j : j + 1] + ls[i + 1 : j] + ls[i : i + 1] + ls[j + 1 :]
                ).encode(),
                invalid=None,
            )
