"""`kubetune export SOURCE --dest DIR [--merge] [--gguf f16|q8_0|f32]`.

SOURCE is an adapter (folder or s3:// prefix; its base comes from adapter_config.json
unless --base is given) or an already merged model folder (for --gguf alone).
--merge writes DIR/merged (safetensors); --gguf writes DIR/model-<type>.gguf.
"""

from __future__ import annotations

import click

from kubetune_trainer.export.gguf_export import OUT_TYPES
from kubetune_trainer.export.merge import DTYPES


@click.command("export")
@click.argument("source")
@click.option("--dest", required=True, type=click.Path(file_okay=False), help="Folder to write to.")
@click.option("--base", help="Base model (default: the one named in adapter_config.json).")
@click.option("--merge", is_flag=True, help="Merge the adapter into the base (safetensors).")
@click.option("--gguf", "gguf_types", multiple=True, type=click.Choice(OUT_TYPES),
              help="Write GGUF of this type (repeatable).")  # fmt: skip
@click.option("--dtype", type=click.Choice(DTYPES), default="float32", show_default=True,
              help="Precision of the merged weights.")  # fmt: skip
def command(
    source: str,
    dest: str,
    base: str | None,
    merge: bool,
    gguf_types: tuple[str, ...],
    dtype: str,
) -> None:
    """Merge an adapter into its base and/or write GGUF files."""
    from pathlib import Path

    from kubetune_trainer.errors import TrainerError
    from kubetune_trainer.evaluation.models import ADAPTER_CONFIG, localize_dir
    from kubetune_trainer.export.gguf_export import write_gguf
    from kubetune_trainer.export.merge import merge_adapter

    if not merge and not gguf_types:
        raise click.UsageError("nothing to do: give --merge and/or --gguf TYPE")
    out = Path(dest)
    try:
        src = localize_dir(source)
        is_adapter = (src / ADAPTER_CONFIG).is_file()
        if is_adapter:
            merged_dir = out / "merged"
            r = merge_adapter(source, merged_dir, base=base, dtype=dtype)
            click.echo(
                f"merged {r.adapter} into {r.base}: {r.merged_into}; adapter trained with "
                f"quantization {r.trained_quantization} -> {merged_dir}"
            )
        elif merge:
            raise click.UsageError(f"{source} has no {ADAPTER_CONFIG}: nothing to merge")
        else:
            merged_dir = src
        for t in gguf_types:
            g = write_gguf(merged_dir, out / f"model-{t}.gguf", t)
            note = f" ({len(g.fallback_f16)} tensors kept f16)" if g.fallback_f16 else ""
            click.echo(f"wrote {g.path}: {g.tensors} tensors, {g.size:,} bytes, {t}{note}")
    except TrainerError as exc:
        raise click.ClickException(str(exc)) from None
