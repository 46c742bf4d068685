"""Discovery, selectors and Table output for the emulator (what kubectl and kopf read).

KMock's own discovery reports the core group as "/v1" and knows nothing of
printer columns; here the registry of kinds (built-ins + CRDs created through the
API) answers /api, /api/v1, /apis, /apis/<group>[/<version>], and lists/gets asked
with `Accept: ...;as=Table` get a meta.k8s.io/v1 Table built from the CRD's
additionalPrinterColumns (Name + columns; Name + Age for other kinds).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class KindInfo:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    subresources: frozenset[str] = frozenset()
    shortnames: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    printer_columns: tuple[Obj, ...] = field(default=(), hash=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


ST = frozenset({"status"})
BUILTIN_KINDS = (
    KindInfo("", "v1", "pods", "Pod", subresources=ST, shortnames=("po",)),
    KindInfo("", "v1", "services", "Service", subresources=ST, shortnames=("svc",)),
    KindInfo("", "v1", "configmaps", "ConfigMap", shortnames=("cm",)),
    KindInfo("", "v1", "secrets", "Secret"),
    KindInfo("", "v1", "events", "Event", shortnames=("ev",)),
    KindInfo(
        "", "v1", "namespaces", "Namespace", namespaced=False, subresources=ST, shortnames=("ns",)
    ),
    KindInfo("batch", "v1", "jobs", "Job", subresources=ST),
    KindInfo("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy"),
    # Leader election (client-go, controller-runtime, kubetune_operator.leader).
    KindInfo("coordination.k8s.io", "v1", "leases", "Lease"),
    KindInfo(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        subresources=ST,
        shortnames=("crd",),
    ),
)


def kinds_from_crd(crd: Obj) -> list[KindInfo]:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    out = []
    for v in spec.get("versions") or []:
        if not v.get("served", True):
            continue
        out.append(
            KindInfo(
                group=spec["group"],
                version=v["name"],
                plural=names["plural"],
                kind=names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                subresources=frozenset((v.get("subresources") or {}).keys()),
                shortnames=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                printer_columns=tuple(v.get("additionalPrinterColumns") or ()),
            )
        )
    return out


# --- discovery ---------------------------------------------------------------------------
def _resource_list(kinds: list[KindInfo], group_version: str) -> Obj:
    resources = []
    for k in kinds:
        resources.append(
            {
                "name": k.plural,
                "singularName": k.kind.lower(),
                "namespaced": k.namespaced,
                "kind": k.kind,
                "verbs": VERBS,
                "shortNames": list(k.shortnames),
                "categories": list(k.categories),
            }
        )
        for sub in sorted(k.subresources):
            resources.append(
                {
                    "name": f"{k.plural}/{sub}",
                    "singularName": "",
                    "namespaced": k.namespaced,
                    "kind": k.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }


def _group(name: str, versions: list[str]) -> Obj:
    gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": gvs, "preferredVersion": gvs[0]}


def serve_discovery(emu: Any, req: Any) -> Obj | None:
    if str(req.method.value).upper() != "GET":
        return None
    path = req.url.path.rstrip("/")
    kinds: list[KindInfo] = list(emu.kinds.values())
    groups: dict[str, list[str]] = {}
    for k in kinds:
        if k.group and k.version not in groups.setdefault(k.group, []):
            groups[k.group].append(k.version)
    if path == "/api":
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}
            ],
        }
    if path == "/api/v1":
        return _resource_list([k for k in kinds if not k.group], "v1")
    if path == "/apis":
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [_group(g, vs) for g, vs in sorted(groups.items())],
        }
    m = re.fullmatch(r"/apis/([^/]+)(?:/([^/]+))?", path)
    if m:
        group, version = m.group(1), m.group(2)
        if group not in groups or (version and version not in groups[group]):
            return None
        if version is None:
            return {"kind": "APIGroup", "apiVersion": "v1", **_group(group, groups[group])}
        sel = [k for k in kinds if k.group == group and k.version == version]
        return _resource_list(sel, f"{group}/{version}")
    return None


# --- selectors ---------------------------------------------------------------------------
_TERM = re.compile(
    r"^\s*(!?)([\w./-]+)\s*(?:(==|=|!=)\s*([\w./-]*)|\s+(in|notin)\s*\(([^)]*)\))?\s*$"
)


def _split(selector: str) -> list[str]:
    terms, depth, cur = [], 0, ""
    for ch in selector:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            terms.append(cur)
            cur = ""
        else:
            cur += ch
    return [t for t in [*terms, cur] if t.strip()]


def match_labels(obj: Obj, selector: str) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in _split(selector or ""):
        m = _TERM.match(term)
        if not m:
            raise ValueError(f"bad label selector term {term!r}")
        neg, key, op, val, setop, vals = m.groups()
        if neg:
            ok = key not in labels
        elif op in ("=", "=="):
            ok = labels.get(key) == val
        elif op == "!=":
            ok = labels.get(key) != val
        elif setop:
            options = {v.strip() for v in vals.split(",")}
            ok = (labels.get(key) in options) if setop == "in" else (labels.get(key) not in options)
        else:
            ok = key in labels
        if not ok:
            return False
    return True


def _path(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def match_fields(obj: Obj, selector: str) -> bool:
    for term in _split(selector or ""):
        m = re.match(r"^\s*([\w.]+)\s*(==|=|!=)\s*(.*?)\s*$", term)
        if not m:
            raise ValueError(f"bad field selector term {term!r}")
        key, op, val = m.groups()
        have = _path(obj, key)
        have = "" if have is None else str(have)
        if (have == val) != (op != "!="):
            return False
    return True


# --- tables ------------------------------------------------------------------------------
def human_age(ts: str | None, now: datetime | None = None) -> str:
    """Like Kubernetes' HumanDuration (what `kubectl get` shows as AGE)."""
    if not ts:
        return "<unknown>"
    t = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    s = max(0, int(((now or datetime.now(UTC)) - t).total_seconds()))
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = m // 60
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    return f"{h // 24}d"


def json_path(obj: Any, path: str) -> Any:
    """The CRD printer-column subset: .a.b, .a[0].b, .a[?(@.k=="v")].b (first match)."""
    for part in re.findall(
        r'\[\?\(@\.\w+=="[^"]*"\)\]|[^.\[\]]+|\[\d+\]', path.strip().lstrip(".")
    ):
        if part.startswith("[?"):
            key, want = re.findall(r'@\.(\w+)=="([^"]*)"', part)[0]
            found = [o for o in obj if isinstance(o, dict)] if isinstance(obj, list) else []
            obj = next((o for o in found if str(o.get(key)) == want), None)
        elif part.startswith("["):
            idx = int(part[1:-1])
            obj = obj[idx] if isinstance(obj, list) and idx < len(obj) else None
        else:
            obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def table(info: KindInfo, items: list[Obj], rv: int, include: str) -> Obj:
    cols = list(info.printer_columns) or [
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    ]
    defs = [
        {
            "name": "Name",
            "type": "string",
            "format": "name",
            "priority": 0,
            "description": "Name must be unique within a namespace.",
        }
    ]
    defs += [
        {
            "name": c["name"],
            "type": c.get("type", "string"),
            "format": c.get("format", ""),
            "description": c.get("description", ""),
            "priority": c.get("priority", 0),
        }
        for c in cols
    ]
    rows = []
    for obj in items:
        cells: list[Any] = [obj["metadata"]["name"]]
        for c in cols:
            value = json_path(obj, c["jsonPath"])
            if c.get("type") == "date":
                value = human_age(value) if value else "<unknown>"
            cells.append(value)
        row: Obj = {"cells": cells}
        if include == "Object":
            row["object"] = obj
        elif include != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": str(rv)},
        "columnDefinitions": defs,
        "rows": rows,
    }
