"""Save the trained adapter (never base weights) with its tokenizer and a model card."""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubetune_trainer.errors import RetryableError

ADAPTER_WEIGHTS = "adapter_model.safetensors"
RECORD = "adapter.json"  # written last: the adapter's commit mark


@dataclass
class SavedAdapter:
    local_dir: Path
    uri: str
    sha256: str  # of adapter_model.safetensors
    size: int  # bytes of adapter_model.safetensors
    files: dict[str, int]  # every file -> size
    # (name, bytes, sha256) of every file as read back from the store after the upload
    stored: list[tuple[str, int, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"uri": self.uri, "sha256": self.sha256, "size": self.size, "files": self.files}

    def table(self) -> str:
        """One line per stored file: name, size and sha256 (what `kubetune run` prints)."""
        width = max((len(n) for n, _, _ in self.stored), default=4)
        return "\n".join(f"  {n:<{width}}  {b:>12,} bytes  sha256 {h}" for n, b, h in self.stored)


def read_back(store: Any, prefix: str = "") -> list[tuple[str, int, str]]:
    """(name, bytes, sha256) of every file under `prefix`, downloaded again from the store.

    What the store holds, not what was sent: the one check `kubetune run` and the
    notebook's save cell both make on an adapter.
    """
    from kubetune_trainer.storage import sha256_file

    out = []
    with tempfile.TemporaryDirectory(prefix="kubetune-readback-") as tmp:
        for key, size in sorted(store.sizes(prefix).items()):
            name = key[len(prefix) :]
            local = store.get_file(key, Path(tmp) / name)
            out.append((name, size, sha256_file(local)))
            local.unlink()
    return out


def model_card(job: Any, base_display: str, results: dict[str, Any]) -> str:
    s = job.spec
    a = s.adapter
    lines = [
        "---",
        f"base_model: {base_display}",
        "library_name: peft",
        "tags: [kubetune, lora" + (", qlora" if s.quantization.mode != "none" else "") + "]",
        "---",
        f"# {job.metadata.namespace}/{job.metadata.name}",
        "",
        f"A LoRA adapter for `{base_display}` trained by kubetune (objective "
        f"`{s.objective}`). It holds only the adapter weights: load the base model, then "
        "`PeftModel.from_pretrained(base, this_folder)`.",
        "",
        "## Training",
        f"- LoRA r={a.r}, alpha={a.alpha}, dropout={a.dropout}, targets "
        f"{', '.join(a.target_modules)}",
        f"- quantization: {s.quantization.mode}; precision {results.get('precision')}",
        f"- data: `{s.dataset.source}` (fingerprint {results.get('data_fingerprint')})",
        f"- steps {results.get('steps')}, learning rate {s.training.learning_rate}, "
        f"micro batch {s.training.micro_batch_size} x accumulation "
        f"{s.training.gradient_accumulation}, seed {s.training.seed}",
        "",
        "## Results",
        f"- eval loss: base {_f(results.get('base_eval_loss'))} -> tuned "
        f"{_f(results.get('tuned_eval_loss'))}",
        f"- final train loss {_f(results.get('final_train_loss'))}",
    ]
    return "\n".join(lines) + "\n"


def _f(v: Any) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def portable_base(spec: Any) -> str | None:
    """The base as another machine finds it: the s3:// prefix, not this one's fetch cache."""
    from kubetune_api.uris import scheme_of

    m = spec.model
    return m.base if scheme_of(m.base) == "s3" and not m.gguf_file else None


def save_adapter(
    model: Any,
    tokenizer: Any,
    out: Path,
    card: str,
    state_dict: dict[str, Any] | None = None,
    base_ref: str | None = None,
) -> dict[str, int]:
    """Write adapter + tokenizer + README.md into `out`; returns file -> size.

    `state_dict`: adapter weights gathered beforehand (ZeRO-3 keeps only slices per rank).
    `base_ref`: recorded as the adapter's base (peft would record the local folder loaded).
    """
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True, state_dict=state_dict)
    if base_ref:
        cfg_file = out / "adapter_config.json"
        cfg = json.loads(cfg_file.read_text())
        cfg["base_model_name_or_path"] = base_ref
        cfg_file.write_text(json.dumps(cfg, indent=2, sort_keys=True))
    tokenizer.save_pretrained(out)
    (out / "README.md").write_text(card, encoding="utf-8")
    files = {
        p.relative_to(out).as_posix(): p.stat().st_size
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }
    if ADAPTER_WEIGHTS not in files:
        raise RuntimeError(f"peft wrote no {ADAPTER_WEIGHTS} in {out}")
    return files


def upload_adapter(store: Any, local: Path, files: dict[str, int]) -> SavedAdapter:
    """Upload every adapter file, read each back (size and sha256 against what was sent),
    then write adapter.json, the weights' hash in it, last (the commit mark).

    A file the store holds differently raises RetryableError before adapter.json exists:
    the failure cleanup removes the uncommitted adapter and the next attempt uploads again.
    """
    # The store hashes what it sends: the local side costs no second read.
    digests = {name: store.put_file(local / name, f"adapter/{name}") for name in files}
    stored = {n: (b, h) for n, b, h in read_back(store, "adapter/") if n != RECORD}
    problems = [
        f"{name}: sent {size:,} bytes sha256 {digests[name]}, stored "
        + (f"{stored[name][0]:,} bytes sha256 {stored[name][1]}" if name in stored else "nothing")
        for name, size in files.items()
        if stored.get(name) != (size, digests[name])
    ]
    if problems:
        raise RetryableError(
            f"adapter upload to {store.uri('adapter')} did not verify: " + "; ".join(problems)
        )
    digest = digests[ADAPTER_WEIGHTS]
    meta = {"sha256": digest, "size": files[ADAPTER_WEIGHTS], "files": files}
    record = json.dumps(meta, indent=2).encode()
    store.put_bytes(f"adapter/{RECORD}", record)
    back = store.get_bytes(f"adapter/{RECORD}")
    if back != record:
        store.delete_prefix(f"adapter/{RECORD}")  # never leave a commit mark that lies
        raise RetryableError(f"{store.uri(f'adapter/{RECORD}')} reads back differently")
    rows = [(n, *stored[n]) for n in sorted(files)]
    rows.append((RECORD, len(back), hashlib.sha256(back).hexdigest()))
    saved = SavedAdapter(local, store.uri("adapter"), digest, files[ADAPTER_WEIGHTS], files)
    saved.stored = rows
    return saved
