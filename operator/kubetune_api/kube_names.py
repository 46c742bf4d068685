"""Kubernetes' own rules for names, labels, annotations, quantities and image references.

The API server refuses a Pod or Job that breaks them; `kubetune validate` refuses the spec
first, naming the field. Patterns are written without anchors: Python checks them with
`fullmatch` (a `$` would accept a trailing newline) and the CRD gets them as `^(...)$`
(RE2 and Rust `$` match only at the very end).
"""

from __future__ import annotations

import re
from typing import Any, Final

from .safe_yaml import MAX_SHOWN, shorten

DNS1123_LABEL: Final = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1035_LABEL: Final = r"[a-z]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN: Final = rf"{DNS1123_LABEL}(\.{DNS1123_LABEL})*"
_NAME_PART: Final = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
LABEL_VALUE: Final = rf"({_NAME_PART})?"
# Non-negative Kubernetes quantities (resource.Quantity without the sign).
QUANTITY: Final = (
    r"\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE][-+]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?"
)
# docker/distribution reference grammar: [host[:port]/]path[:tag][@digest].
_HOST: Final = r"([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(\.([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(:[0-9]+)?"  # noqa: E501
_PATH: Final = r"[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*"
IMAGE: Final = (
    rf"({_HOST}/)?{_PATH}(/{_PATH})*(:[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?"
    r"(@sha256:[0-9a-f]{64})?"
)
MAX_IMAGE_LENGTH: Final = 255 + 1 + 128 + 72  # name, ':', tag, '@sha256:' + 64
MAX_ANNOTATIONS_BYTES: Final = 256 * 1024  # total size of keys + values, as the API server


def anchored(pattern: str) -> str:
    """The pattern as the CRD holds it."""
    return f"^({pattern})$"


def matches(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None


def check_dns_label(value: str, what: str, max_len: int = 63, first_letter: bool = False) -> str:
    pattern = DNS1035_LABEL if first_letter else DNS1123_LABEL
    if len(value) > max_len or not matches(pattern, value):
        start = "a letter" if first_letter else "a letter or digit"
        raise ValueError(
            f"{what} {shorten(repr(value), MAX_SHOWN)} is not a DNS label: use at most "
            f"{max_len} lowercase letters, digits and '-', starting with {start} and ending "
            "with a letter or digit"
        )
    return value


def qualified_name_problem(key: str) -> str | None:
    """Why `key` is not a label/annotation key ([prefix/]name), or None."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not matches(DNS1123_SUBDOMAIN, prefix)):
        return "its prefix (before '/') must be a DNS subdomain such as example.com"
    if not name or len(name) > 63 or not matches(_NAME_PART, name):
        return (
            "the name (after any 'prefix/') must be 1-63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return None


def check_label_value(value: str, what: str) -> str:
    if len(value) > 63 or not matches(LABEL_VALUE, value):
        raise ValueError(
            f"{what} {shorten(repr(value), MAX_SHOWN)} is not a label value: at most 63 "
            "letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        )
    return value


def check_labels(values: dict[str, Any], what: str) -> dict[str, Any]:
    """Label keys and values (metadata.labels, nodeSelector)."""
    for key, value in values.items():
        problem = qualified_name_problem(key)
        if problem:
            raise ValueError(f"{what} key {shorten(repr(key), MAX_SHOWN)} is invalid: {problem}")
        check_label_value(value, f"{what} {shorten(repr(key), 80)}:")
    return values


def check_annotations(values: dict[str, Any], what: str) -> dict[str, Any]:
    size = 0
    for key, value in values.items():
        problem = qualified_name_problem(key)
        if problem:
            raise ValueError(f"{what} key {shorten(repr(key), MAX_SHOWN)} is invalid: {problem}")
        size += len(key) + len(value)
    if size > MAX_ANNOTATIONS_BYTES:
        raise ValueError(f"{what} hold {size} bytes; the API server allows at most 256 KiB")
    return values


def check_quantity(value: str, what: str) -> str:
    if not matches(QUANTITY, value):
        raise ValueError(
            f"{what + ' ' if what else ''}{shorten(repr(value), MAX_SHOWN)} is not a Kubernetes "
            "quantity "
            "(e.g. 500m, 4, 16Gi)"
        )
    return value


def check_image(value: str) -> str:
    if len(value) > MAX_IMAGE_LENGTH or not matches(IMAGE, value):
        raise ValueError(
            f"{shorten(repr(value), MAX_SHOWN)} is not an image reference: use "
            "registry/repository[:tag] or registry/repository@sha256:<64 hex digits>, "
            "lowercase repository"
        )
    return value
