"""Pages of a mapped checkpoint that no tensor uses are given back; used ones, and written
ones, are kept (modeling/file_pages.py)."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from kubetune_trainer.engine.setup import training_texts
from kubetune_trainer.modeling import file_pages, loader
from tests.support.builders import make_job, prepared

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/smaps")
PAGE = file_pages.PAGE
N = 1 << 18  # 1 MiB of fp32 per tensor


def test_gaps_are_whole_pages_outside_every_live_range() -> None:
    live = file_pages.live_ranges([])
    assert file_pages.gaps(0, 4 * PAGE, live) == [(0, 4 * PAGE)]
    live = [(PAGE + 8, 2 * PAGE - 8), (3 * PAGE + 1, 3 * PAGE + 2)]
    # The partly used pages 1 and 3 stay; page 0, page 2 and nothing else go.
    assert file_pages.gaps(0, 4 * PAGE, live) == [(0, PAGE), (2 * PAGE, 3 * PAGE)]
    assert file_pages.gaps(0, 2 * PAGE, [(0, 2 * PAGE)]) == []


def test_live_ranges_merge_views_of_one_storage() -> None:
    base = torch.zeros(4 * PAGE, dtype=torch.uint8)
    ranges = file_pages.live_ranges([base[:10], base[PAGE:], torch.zeros(0)])
    start = base.untyped_storage().data_ptr()
    assert ranges == [(start, start + 4 * PAGE)]


def _mapping(path: Path) -> file_pages.Mapping:
    (found,) = [m for m in file_pages.mappings() if m.path == str(path)]
    return found


def _open(tmp_path: Path) -> tuple[Path, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    path = tmp_path / "model.safetensors"
    a, b = torch.randn(N), torch.randn(N)
    save_file({"a": a, "b": b}, str(path))
    f = safe_open(str(path), "pt")
    mapped_a, mapped_b = f.get_tensor("a"), f.get_tensor("b")
    assert mapped_a.sum() == a.sum() and mapped_b.sum() == b.sum()  # both read: resident
    return path, a, b, mapped_a, mapped_b


def test_pages_no_tensor_uses_are_released_and_used_ones_kept(tmp_path: Path) -> None:
    path, a, b, mapped_a, mapped_b = _open(tmp_path)
    before = _mapping(path).rss_kb
    assert before >= 2 * N * 4 // 1024
    holder = torch.nn.Module()
    holder.register_buffer("a", mapped_a)  # the model keeps a; b was copied elsewhere
    released = file_pages.release_unused(holder)
    assert released >= N * 4 - 2 * PAGE
    after = _mapping(path).rss_kb
    assert after <= before - (N * 4 - 2 * PAGE) // 1024
    assert torch.equal(holder.a, a)  # kept pages untouched
    assert torch.equal(mapped_b, b)  # a released page reads the file again, unchanged


def test_a_mapping_with_a_written_page_is_left_alone(tmp_path: Path) -> None:
    path, _, b, mapped_a, mapped_b = _open(tmp_path)
    mapped_b[0] = 42.0  # a private copy of that page: dropping it would lose the write
    assert _mapping(path).anonymous_kb > 0
    holder = torch.nn.Module()
    holder.register_buffer("a", mapped_a)
    assert file_pages.release_unused(holder) == 0
    assert mapped_b[0] == 42.0 and torch.equal(mapped_b[1:], b[1:])


def test_a_mapping_none_of_the_models_tensors_lives_in_is_not_touched(tmp_path: Path) -> None:
    """The same file mapped again (a second model from the same checkpoint) keeps its pages."""
    path, _, _, mapped_a, mapped_b = _open(tmp_path)
    again = safe_open(str(path), "pt").get_tensor("a")  # a second mapping of the same file
    first = [m for m in file_pages.mappings() if m.start <= mapped_a.data_ptr() < m.end]
    assert len(first) == 1 and not first[0].start <= again.data_ptr() < first[0].end
    holder = torch.nn.Module()
    holder.register_buffer("a", again)
    file_pages.release_unused(holder)
    (now,) = [m for m in file_pages.mappings() if m.start == first[0].start]
    assert now.rss_kb == first[0].rss_kb
    assert mapped_b.sum() != 0  # keep the first mapping alive until here


def _present(start: int, end: int) -> int:
    """How many pages of [start, end) are in this process's page tables (pagemap bit 63)."""
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(start // PAGE * 8)
        words = f.read((end - start) // PAGE * 8)
    return sum(w >> 63 for (w,) in struct.iter_unpack("<Q", words))


def _unused_present(model: torch.nn.Module) -> int:
    """Resident pages of the model's checkpoint mappings that none of its tensors lies in."""
    live = file_pages.live_ranges(file_pages._tensors(model))
    shards = [m for m in file_pages.mappings() if any(a < m.end and b > m.start for a, b in live)]
    assert shards, "the checkpoint is no longer mapped: this test checks nothing"
    return sum(_present(a, b) for m in shards for a, b in file_pages.gaps(m.start, m.end, live))


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_a_4bit_cpu_base_keeps_only_pages_its_tensors_live_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, precision: str
) -> None:
    """Quantizing in memory (first load) and reading the cached copy (second) both leave no
    page of the checkpoint's mappings resident outside the model's tensors, after loading
    and after attach_lora; without the release, the pages read to quantize and to copy and
    cast the embedding and the head are. Both compute the same logits."""
    monkeypatch.setenv("KUBETUNE_CACHE", str(tmp_path / "cache"))
    spec = make_job(tmp_path / "out", quantization={"mode": "4bit", "doubleQuant": True}).spec
    base = loader.resolve_base(spec, training_texts(prepared()))
    ids = torch.tensor([[1, 5, 9, 13, 17, 21]])
    first = loader.load_base_model(spec, base, precision)  # quantizes, then caches
    assert _unused_present(first) == 0

    def load(release: bool) -> tuple[torch.nn.Module, int]:
        with monkeypatch.context() as m:
            if not release:
                m.setattr(file_pages, "release_unused", lambda model: 0)
            loaded = loader.load_base_model(spec, base, precision)  # the cached copy
            if release:
                assert _unused_present(loaded) == 0
            model = loader.attach_lora(spec, loaded, False)
        return model, _unused_present(model)

    kept, kept_unused = load(release=False)
    model, unused = load(release=True)
    assert unused == 0 < kept_unused
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, kept(input_ids=ids).logits)
