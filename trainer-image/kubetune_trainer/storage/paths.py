"""Containment for every path built from outside input (object keys, manifest names,
namespace, name, registerAs, output roots).

A key read from a bucket or a MANIFEST.json is untrusted: whoever can write to a shared
bucket could otherwise write anywhere the trainer can. Each part is refused when it is
absolute, has a '..' or '.' segment, an empty segment, a NUL or a backslash; the joined
path is then resolved (symlinks too) and must stay under its root. Callers check every
name BEFORE writing anything, so a violation leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from kubetune_trainer.errors import ConfigError


class UnsafePathError(ConfigError):
    """A name from outside input would leave its root. Permanent: fix the input."""


def _problem(part: str) -> str | None:
    """Why `part` (a '/'-separated relative name) is unsafe, or None."""
    if not isinstance(part, str) or part == "":
        return "it is empty"
    if "\x00" in part:
        return "it contains a NUL byte"
    if "\\" in part:
        return "it contains a backslash"
    if part.startswith("/"):
        return "it is absolute"
    for seg in part.split("/"):
        if seg == "..":
            return "it has a '..' segment"
        if seg in ("", "."):
            return "it has an empty or '.' segment"
    return None


def check_name(part: str, what: str) -> str:
    """`part` itself if it is a safe relative name; UnsafePathError naming `what` if not."""
    why = _problem(part)
    if why:
        raise UnsafePathError(
            f"refusing {what} {part!r}: {why}, so it could write outside its folder; "
            "nothing was written (rename or delete it at the source)"
        )
    return part


def check_names(parts: Iterable[str], what: str) -> None:
    """Check every name first: a caller that writes several files writes none on a bad one."""
    for part in parts:
        check_name(part, what)


def safe_join(root: str | Path, *parts: str, what: str = "path") -> Path:
    """`root / parts...`, resolved, guaranteed to lie inside `root` (never `root` itself).

    `what` names the input in the error, e.g. "object key 'models/base/../../x'".
    """
    for part in parts:
        check_name(part, what)
    base = Path(root).expanduser().resolve()
    path = base.joinpath(*parts).resolve()
    # resolve() follows symlinks: a link inside root pointing outside is refused too.
    if base not in path.parents:
        shown = "/".join(parts)
        raise UnsafePathError(
            f"refusing {what} {shown!r}: it resolves to {path}, outside {base} "
            "(a symbolic link?); nothing was written"
        )
    return path


def check_local_root(root: str | Path, what: str = "output root") -> Path:
    """A local artifact root: refused when it is the filesystem root ('/')."""
    path = Path(root).expanduser().resolve()
    if path == Path(path.anchor):
        raise UnsafePathError(
            f"{what} {str(root)!r} is the filesystem root: give a folder of its own, "
            "e.g. --output ./runs"
        )
    return path


def run_location(output_uri: str, namespace: str, name: str) -> str:
    """`<output>/<namespace>/<name>`, with namespace and name each one safe segment and a
    local output root that is not '/'. The run folder is always strictly inside the root."""
    from kubetune_api.uris import is_remote, run_prefix

    for part, field in ((namespace, "metadata.namespace"), (name, "metadata.name")):
        if _problem(part) or "/" in part:
            raise UnsafePathError(
                f"refusing {field} {part!r}: it must be one plain name (no '/', '..', "
                "backslash or NUL), so the run stays inside the output root"
            )
    if not is_remote(output_uri):
        local = output_uri.removeprefix("file://")
        check_local_root(local)
        safe_join(local, namespace, name, what="run folder")
    return run_prefix(output_uri, namespace, name)
