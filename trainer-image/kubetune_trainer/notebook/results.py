"""The notebook's last cells: the saved adapter read back (and uploaded), base vs tuned."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .display import html_table, pre, show


# -- adapter -------------------------------------------------------------------------------
@dataclass
class AdapterSummary:
    uri: str
    local_dir: Path
    files: list[tuple[str, int, str]]  # (name, bytes, sha256), read back from the store
    recorded_sha256: str  # what run_job wrote into adapter.json when it saved the weights
    uploaded_to: str | None = None

    def weights_ok(self) -> bool:
        from kubetune_trainer.engine.adapter import ADAPTER_WEIGHTS

        return any(n == ADAPTER_WEIGHTS and h == self.recorded_sha256 for n, _, h in self.files)

    def footer(self) -> str:
        ok = "matches" if self.weights_ok() else "DOES NOT match"
        s3 = f"uploaded to {self.uploaded_to}" if self.uploaded_to else "S3 upload: off"
        return f"weights sha256 {ok} adapter.json\n{s3}"

    def text(self) -> str:
        width = max(len(n) for n, _, _ in self.files)
        rows = [f"{n:<{width}}  {size:>12,}  {digest}" for n, size, digest in self.files]
        head = f"{'file':<{width}}  {'bytes':>12}  sha256"
        return "\n".join([f"adapter: {self.uri}", head, *rows, self.footer()])


def save(result: Any, s3_uri: str = "", endpoint_url: str | None = None) -> AdapterSummary:
    """The saved adapter's files, sizes and sha256 read back from where run_job put them
    (engine.adapter.read_back, the check run_job makes after its upload); with an s3:// URI
    also uploaded in the cluster's layout `<uri>/<namespace>/<name>/`."""
    from kubetune_trainer.engine.adapter import RECORD, read_back
    from kubetune_trainer.evaluation.models import localize_dir
    from kubetune_trainer.storage import open_store

    store = open_store(result.adapter.uri)
    files = read_back(store)
    recorded = json.loads(store.get_bytes(RECORD))["sha256"]
    local = localize_dir(result.adapter.uri)  # the files to upload elsewhere
    summary = AdapterSummary(result.adapter.uri, local, files, recorded)
    if s3_uri and summary.weights_ok():
        summary.uploaded_to = upload(result, summary, s3_uri, endpoint_url)
    table = html_table(["file", "bytes", "sha256"], [[n, f"{b:,}", h] for n, b, h in files])
    show(summary.text(), pre(f"adapter: {summary.uri}") + table + pre(summary.footer()))
    if not summary.weights_ok():  # stop the notebook: these weights are not the trained ones
        raise RuntimeError(f"{summary.uri}: adapter weights differ from adapter.json's sha256")
    return summary


def upload(
    result: Any, summary: AdapterSummary, s3_uri: str, endpoint_url: str | None = None
) -> str:
    """The engine's upload_adapter into `<s3_uri>/<ns>/<name>/adapter/` (adapter.json last)."""
    from kubetune_api.uris import run_prefix, scheme_of
    from kubetune_trainer.engine.adapter import upload_adapter
    from kubetune_trainer.storage import open_store

    if scheme_of(s3_uri) != "s3":
        raise ValueError(f"S3_URI must start with s3://, not {s3_uri!r}")
    job = result.report["job"]
    store = open_store(run_prefix(s3_uri, job["namespace"], job["name"]), endpoint_url)
    store.check_writable()
    files = {n: size for n, size, _ in summary.files if n != "adapter.json"}
    saved = upload_adapter(store, summary.local_dir, files)  # reads every file back
    if saved.sha256 != summary.recorded_sha256:
        raise RuntimeError(f"upload to {saved.uri}: the weights' sha256 differs")
    return saved.uri


# -- base vs tuned -------------------------------------------------------------------------
def comparison_text(evaluation: dict[str, Any]) -> str:
    base, tuned = evaluation["base"], evaluation["tuned"]
    gen = ", ".join(f"{k}={v}" for k, v in tuned["generation"].items())
    lines = [f"generation parameters: {gen}", ""]
    for k in _shared_metrics(evaluation):
        lines.append(
            f"{k:<22}base {base['metrics'][k]:>10.4f}   tuned {tuned['metrics'][k]:>10.4f}"
        )
    for i, (b, t) in enumerate(zip(base["examples"], tuned["examples"], strict=True), start=1):
        lines += [
            "",
            f"Q{i}: {b['prompt']}",
            f"  reference: {b['reference']}",
            f"  base answer:  {b['output'] or '(empty answer)'}",
            f"  tuned answer: {t['output'] or '(empty answer)'}",
        ]
    return "\n".join(lines)


def _shared_metrics(evaluation: dict[str, Any]) -> list[str]:
    keys = set(evaluation["base"]["metrics"]) & set(evaluation["tuned"]["metrics"])
    return sorted(keys - {"loss_tokens"})  # a count, the same for both


def compare(result: Any) -> dict[str, Any] | None:
    """Base (adapter off) vs tuned on held-out questions, as run_job evaluated them.

    run_job generates with the trained model still in memory (the base is the same model
    with the adapter disabled, 4-bit included), so nothing is loaded a second time here.
    """
    evaluation = (result.report or {}).get("evaluation")
    if not evaluation:
        msg = "no comparison: evaluation was off or there were no held-out (validation) records"
        show(msg)
        return None
    base, tuned = evaluation["base"], evaluation["tuned"]
    page = (
        "<p><b>Generation parameters</b> (the same for both models)</p>"
        + html_table(["parameter", "value"], list(map(list, tuned["generation"].items())))
        + "<p><b>Metrics on the held-out records</b></p>"
        + html_table(
            ["metric", "base", "tuned"],
            [[k, f"{base['metrics'][k]:.4f}", f"{tuned['metrics'][k]:.4f}"]
             for k in _shared_metrics(evaluation)],
        )
        + "<p><b>Answers to held-out questions</b></p>"
        + html_table(
            ["question", "reference", "base answer", "tuned answer"],
            [[b["prompt"], b["reference"], b["output"] or "(empty answer)",
              t["output"] or "(empty answer)"]
             for b, t in zip(base["examples"], tuned["examples"], strict=True)],
        )
    )  # fmt: skip
    show(comparison_text(evaluation), page)
    return evaluation
