"""precision auto on a CPU: bf16 only where a bf16-autocast training step was measured to
pay; the verdict is measured once per machine kind and reused, so every attempt of a job
resolves the same precision."""

from __future__ import annotations

import json
from pathlib import Path

from kubetune_trainer.modeling import cpu_precision as cp


def test_the_rule_needs_a_clear_saving() -> None:
    assert cp.bf16_pays({"fp32_s": 1.0, "bf16_s": 0.5})
    assert cp.bf16_pays({"fp32_s": 1.0, "bf16_s": cp.BF16_MAX_RATIO})
    assert not cp.bf16_pays({"fp32_s": 1.0, "bf16_s": 0.9})  # 10% is within the noise
    assert not cp.bf16_pays({"fp32_s": 1.0, "bf16_s": 1.6})  # avx512_bf16 without AMX


def test_measured_once_then_reused(tmp_path: Path) -> None:
    verdict = cp.cpu_bf16_fast("Test CPU", tmp_path)  # a real measurement on this machine
    saved = json.loads((tmp_path / cp.CACHE_FILE).read_text())
    entry = saved[cp.machine_key("Test CPU")]
    assert entry["fp32_s"] > 0 and entry["bf16_s"] > 0
    assert entry["bf16"] is verdict is cp.bf16_pays(entry)
    # A stored verdict wins over a new timing: the opposite one is returned as stored.
    saved[cp.machine_key("Test CPU")]["bf16"] = not verdict
    (tmp_path / cp.CACHE_FILE).write_text(json.dumps(saved))
    assert cp.cpu_bf16_fast("Test CPU", tmp_path) is (not verdict)
    # Another kind of machine is measured for itself; the first entry stays.
    cp.cpu_bf16_fast("Other CPU", tmp_path)
    both = json.loads((tmp_path / cp.CACHE_FILE).read_text())
    assert set(both) == {cp.machine_key("Test CPU"), cp.machine_key("Other CPU")}
    assert both[cp.machine_key("Test CPU")]["bf16"] is (not verdict)


def test_a_broken_cache_file_is_measured_again(tmp_path: Path) -> None:
    (tmp_path / cp.CACHE_FILE).write_text("{not json")
    verdict = cp.cpu_bf16_fast("Test CPU", tmp_path)
    assert json.loads((tmp_path / cp.CACHE_FILE).read_text())[cp.machine_key("Test CPU")][
        "bf16"] is verdict  # fmt: skip
