"""Run orchestration: setup, training with checkpoint/resume/preemption, adapter, report."""
