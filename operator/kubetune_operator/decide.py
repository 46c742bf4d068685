"""Pure: one reconciliation decision. (FineTuneJob, observation, now) -> Plan.

Kubeflow-style uniform loop: return if finished (except TTL) -> resolve the spec
(immutable changes rejected) -> deadline -> suspend/resume -> backoff -> create the
attempt's children if missing -> read the attempt's outcome -> new status. The caller
(handlers.reconcile) performs the Plan's side effects through the one API module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kubetune_api.constants import ConditionType as CT
from kubetune_api.constants import Phase, Reason
from kubetune_api.crd import MUTABLE_SPEC_FIELDS
from kubetune_api.loader import InvalidSpecError, parse_spec
from kubetune_api.spec import FineTuneJob
from kubetune_api.status import FineTuneJobStatus, Progress
from kubetune_api.termination import TerminationSummary
from kubetune_api.uris import redact_text, strip_spec_credentials

from .config import Policy
from .observe import Failure, Observation
from .status import (
    clear_condition,
    dump_status,
    eta_display,
    get_condition,
    load_status,
    parse_time,
    rfc3339,
    set_condition,
    set_phase,
    summarize,
)

OOM_ADVICE = (
    "To fit: set spec.quantization.mode: 4bit, spec.training.gradientCheckpointing: on, "
    "lower spec.training.microBatchSize or spec.dataset.maxSeqLength, or raise "
    "spec.resources.memory / use GPUs with more memory."
)


@dataclass
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Inputs:
    name: str
    namespace: str
    generation: int
    spec: dict[str, Any]
    accepted_spec: dict[str, Any] | None  # what the running job was started with
    status: dict[str, Any] | None
    observation: Observation | None  # of the attempt in status.attempt (None: not looked)
    progress: Progress | None  # scraped from rank 0 while running
    now: datetime
    # A child's name is taken by an object this FineTuneJob does not own (its message).
    conflict: str | None = None
    # The API server refused to create a child of this attempt for good (400/403/422).
    rejected: str | None = None
    # The operator's allow-lists (None: anything goes); checked before a spec is accepted.
    policy: Policy | None = None
    # The operator's memory preflight refused the spec (memcheck.py): the trainer's message.
    memory_refusal: str | None = None


@dataclass
class Plan:
    status: FineTuneJobStatus
    status_changed: bool = False
    job: FineTuneJob | None = None  # the effective spec (None if invalid)
    accept_spec: dict[str, Any] | None = None
    ensure_attempt: int | None = None
    delete_attempts: list[int] = field(default_factory=list)
    delete_self: bool = False
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    counted_restart: bool = False
    finished: bool = False


def immutable_changes(accepted: dict[str, Any], current: dict[str, Any]) -> list[str]:
    keys = sorted((set(accepted) | set(current)) - set(MUTABLE_SPEC_FIELDS))
    return [f"spec.{k}" for k in keys if accepted.get(k) != current.get(k)]


def _effective(inp: Inputs, st: FineTuneJobStatus, plan: Plan) -> FineTuneJob | None:
    """The spec to act on: accepted immutable fields + the current mutable ones.

    Both without the credentials a URL may carry (user:password@): what is accepted,
    stored in the ConfigMap and built into children never holds them (they go to the
    job's own Secret, see handlers.reconcile)."""
    spec = strip_spec_credentials(inp.spec)[0]
    if inp.accepted_spec is None:
        try:
            job = parse_spec(spec, inp.name, inp.namespace)
        except InvalidSpecError as exc:
            msg = redact_text("; ".join(str(e) for e in exc.errors))
            _finish(st, plan, Phase.FAILED, Reason.INVALID_SPEC, f"invalid spec: {msg}", inp.now)
            return None
        denied = inp.policy.denies(job) if inp.policy is not None else None
        if denied:
            _finish(st, plan, Phase.FAILED, Reason.FORBIDDEN, denied, inp.now)
            return None
        if inp.memory_refusal:  # before any pod holds a GPU; the trainer's own words
            msg = f"out of memory (operator preflight, no pod started): {inp.memory_refusal}"
            _finish(st, plan, Phase.FAILED, Reason.OUT_OF_MEMORY, msg, inp.now)
            return None
        plan.accept_spec = spec
        return job
    accepted = strip_spec_credentials(inp.accepted_spec)[0]
    rejected = immutable_changes(accepted, spec)
    merged = dict(accepted)
    for key in MUTABLE_SPEC_FIELDS:
        if key in spec:
            merged[key] = spec[key]
        else:
            merged.pop(key, None)
    try:
        job = parse_spec(merged, inp.name, inp.namespace)
    except InvalidSpecError as exc:
        rejected += [e.path or "spec" for e in exc.errors]
        try:
            job = parse_spec(accepted, inp.name, inp.namespace)
        except InvalidSpecError as stale:
            # Accepted by an older operator, refused by this one's rules (an upgrade):
            # a clear end, not an exception on every reconcile.
            msg = redact_text("; ".join(str(e) for e in stale.errors))
            _finish(
                st, plan, Phase.FAILED, Reason.INVALID_SPEC,
                f"the accepted spec no longer validates: {msg}. Delete and re-create the "
                "FineTuneJob with a spec that `kubetune validate` accepts",
                inp.now,
            )  # fmt: skip
            return None
    if rejected:
        msg = (
            f"{', '.join(rejected)} cannot change while the job exists (only "
            f"{', '.join('spec.' + k for k in MUTABLE_SPEC_FIELDS)} can); it keeps running "
            "on the accepted spec. Delete and re-create the FineTuneJob to change them."
        )
        old = st.conditions and next((c for c in st.conditions if c.type == CT.SPEC_REJECTED), None)
        if not old or old.status != "True" or old.message != msg:
            plan.events.append(Event("Warning", Reason.IMMUTABLE_FIELD, msg))
        set_condition(st, CT.SPEC_REJECTED, True, Reason.IMMUTABLE_FIELD, msg, inp.now)
    else:
        clear_condition(st, CT.SPEC_REJECTED, Reason.IMMUTABLE_FIELD, "", inp.now)
    return job


def _finish(
    st: FineTuneJobStatus, plan: Plan, phase: str, reason: str, message: str, now: datetime
) -> None:
    set_phase(st, phase, reason, message, now)
    st.completion_time = rfc3339(now)
    st.next_attempt_after = None
    plan.finished = True
    plan.events.append(Event("Normal" if phase == Phase.SUCCEEDED else "Warning", reason, message))


def _ttl(inp: Inputs, st: FineTuneJobStatus, plan: Plan) -> None:
    rp = (inp.spec.get("runPolicy") or {}).get("ttlSecondsAfterFinished")
    done = parse_time(st.completion_time)
    if rp is None or done is None:
        return
    due = done + timedelta(seconds=int(rp))
    if inp.now >= due:
        plan.delete_self = True
    else:
        plan.requeue_after = (due - inp.now).total_seconds()


def _on_failure(
    inp: Inputs, job: FineTuneJob, st: FineTuneJobStatus, plan: Plan, f: Failure
) -> None:
    rp = job.spec.run_policy
    where = f" (pod {f.pod}, exit code {f.exit_code})" if f.pod else ""
    if f.kind == "oom":
        msg = f"out of memory{where}: {f.message}. {OOM_ADVICE}"
        _finish(st, plan, Phase.FAILED, Reason.OUT_OF_MEMORY, msg, inp.now)
    elif f.kind == "bad_data":
        _finish(st, plan, Phase.FAILED, Reason.BAD_DATA, f"{f.message}{where}", inp.now)
    elif f.kind == "invalid_spec":
        _finish(st, plan, Phase.FAILED, Reason.INVALID_SPEC, f"{f.message}{where}", inp.now)
    elif f.kind == "storage":
        _finish(st, plan, Phase.FAILED, Reason.STORAGE_ERROR, f"{f.message}{where}", inp.now)
    elif f.kind == "deadline":
        _finish(st, plan, Phase.FAILED, Reason.DEADLINE_EXCEEDED, f.message, inp.now)
    elif f.kind == "preempted":
        st.preemptions += 1
        msg = f"attempt {st.attempt} preempted{where}: {f.message}; resuming as attempt " + str(
            st.attempt + 1
        )
        _next_attempt(st, plan, Reason.PREEMPTED, msg, inp.now, delay=0)
    elif st.restarts >= rp.max_restarts:
        msg = f"{f.message}{where}; gave up after {st.restarts} restarts (maxRestarts)"
        _finish(st, plan, Phase.FAILED, Reason.MAX_RESTARTS, msg, inp.now)
    else:
        delay = rp.backoff_seconds * 2**st.restarts
        st.restarts += 1
        plan.counted_restart = True
        msg = (
            f"attempt {st.attempt} failed{where}: {f.message}; restart {st.restarts}/"
            f"{rp.max_restarts} in {delay}s from the latest checkpoint"
        )
        _next_attempt(st, plan, Reason.RETRYABLE_FAILURE, msg, inp.now, delay=delay)


def _next_attempt(
    st: FineTuneJobStatus, plan: Plan, reason: str, msg: str, now: datetime, delay: float
) -> None:
    plan.delete_attempts.append(st.attempt)
    st.attempt += 1
    st.next_attempt_after = rfc3339(now + timedelta(seconds=delay)) if delay > 0 else None
    set_phase(st, Phase.PENDING, reason, msg, now)
    set_condition(st, CT.RESTARTING, True, reason, msg, now)
    plan.events.append(Event("Warning", reason, msg))
    plan.requeue_after = delay


def _apply_summary(st: FineTuneJobStatus, summary: TerminationSummary) -> None:
    """What the trainer's termination summary adds to the status (kubetune_api.termination)."""
    if summary.checkpoint:
        st.last_checkpoint = summary.checkpoint
    if summary.step is not None:
        st.progress.step = summary.step
    if summary.loss is not None:
        st.progress.loss = summary.loss
    if (adapter := summary.adapter()) is not None:
        st.adapter = adapter


def decide(inp: Inputs) -> Plan:
    st = load_status(inp.status)
    before = dump_status(st) if inp.status else None
    plan = Plan(status=st)
    if st.phase in Phase.FINISHED and inp.status:
        # A finished job still acknowledges spec edits (e.g. a ttlSecondsAfterFinished
        # added afterwards): a stale observedGeneration would make it due on every event.
        st.observed_generation = inp.generation
        _ttl(inp, st, plan)
        summarize(st, inp.generation, inp.now)
        plan.finished = True
        plan.status_changed = dump_status(st) != before
        return plan
    job = _effective(inp, st, plan)
    st.observed_generation = inp.generation
    plan.job = job
    if job is not None:
        _run(inp, job, st, plan)
    if plan.finished:
        _ttl(inp, st, plan)
    elif job is not None:
        _deadline_wakeup(job, st, plan, inp.now)
    summarize(st, inp.generation, inp.now)
    plan.status_changed = dump_status(st) != before
    return plan


def _child_conflict(inp: Inputs, st: FineTuneJobStatus, plan: Plan) -> bool:
    """A foreign object holds a child's name: say so, create and read nothing, look again
    at the next interval (it may be deleted). Never Succeeded/Failed because of it."""
    now = inp.now
    if not inp.conflict:
        clear_condition(st, CT.CHILD_CONFLICT, Reason.CHILD_CONFLICT_RESOLVED, "", now)
        return False
    old = get_condition(st, CT.CHILD_CONFLICT)
    if old is None or old.status != "True" or old.message != inp.conflict:
        plan.events.append(Event("Warning", Reason.CHILD_CONFLICT, inp.conflict))
    set_condition(st, CT.CHILD_CONFLICT, True, Reason.CHILD_CONFLICT, inp.conflict, now)
    st.phase = Phase.PENDING  # type: ignore[assignment]
    st.message = inp.conflict
    clear_condition(st, CT.RUNNING, Reason.CHILD_CONFLICT, inp.conflict, now)
    return True


def _deadline_wakeup(job: FineTuneJob, st: FineTuneJobStatus, plan: Plan, now: datetime) -> None:
    """Look again right when the whole-job deadline passes (not at the next interval)."""
    limit, started = job.spec.run_policy.active_deadline_seconds, parse_time(st.start_time)
    if limit and started:
        left = max(0.0, limit - (now - started).total_seconds())
        plan.requeue_after = left if plan.requeue_after is None else min(plan.requeue_after, left)


def _run(inp: Inputs, job: FineTuneJob, st: FineTuneJobStatus, plan: Plan) -> None:
    rp, now, obs = job.spec.run_policy, inp.now, inp.observation
    started = parse_time(st.start_time)
    limit = rp.active_deadline_seconds
    if limit and started and (now - started).total_seconds() >= limit:
        msg = f"spec.runPolicy.activeDeadlineSeconds ({limit}s) exceeded"
        plan.delete_attempts.append(st.attempt)
        _finish(st, plan, Phase.FAILED, Reason.DEADLINE_EXCEEDED, msg, now)
        return
    if rp.suspend:
        if st.phase != Phase.SUSPENDED:
            msg = "suspended: pods stopped, checkpoints kept"
            if st.attempt:
                plan.delete_attempts.append(st.attempt)
            set_phase(st, Phase.SUSPENDED, Reason.SUSPENDED, msg, now)
            plan.events.append(Event("Normal", Reason.SUSPENDED, msg))
        return
    if inp.rejected:
        # Whatever of the attempt was created goes; the FineTuneJob says what the API said.
        if st.attempt:
            plan.delete_attempts.append(st.attempt)
        msg = f"the API server refused a child of attempt {st.attempt or 1}: {inp.rejected}"
        _finish(st, plan, Phase.FAILED, Reason.API_REJECTED, msg, now)
        return
    if _child_conflict(inp, st, plan):
        return
    if st.phase == Phase.SUSPENDED:
        st.attempt += 1  # the suspended attempt's Job is gone: resume as a new attempt
        msg = f"resumed as attempt {st.attempt} from the latest checkpoint"
        set_condition(st, CT.SUSPENDED, False, Reason.RESUMED, msg, now)
        set_phase(st, Phase.PENDING, Reason.RESUMED, msg, now)
        plan.events.append(Event("Normal", Reason.RESUMED, msg))
        plan.ensure_attempt = st.attempt
        return
    after = parse_time(st.next_attempt_after)
    if after and now < after:
        plan.requeue_after = (after - now).total_seconds()
        return
    st.next_attempt_after = None
    st.attempt = st.attempt or 1
    jname = f"{inp.name}-a{st.attempt}"
    if obs is None or not obs.job_exists:
        plan.ensure_attempt = st.attempt
        if st.job_name != jname:
            msg = f"created Job {jname} ({job.spec.distributed.nodes} node(s))"
            plan.events.append(Event("Normal", Reason.JOB_CREATED, msg))
            st.job_name = jname
            set_phase(st, Phase.PENDING, Reason.JOB_CREATED, msg, now)
        st.start_time = st.start_time or rfc3339(now)
        return
    st.job_name = jname
    if obs.complete:
        _apply_summary(st, obs.summary)
        if st.progress.total_steps:
            st.progress.step = max(st.progress.step, st.progress.total_steps)
        st.progress.eta_seconds, st.progress.eta = 0, eta_display(0)
        msg = obs.summary.message or "training finished; adapter saved"
        if st.adapter:
            msg += f" ({st.adapter.uri})"
        _finish(st, plan, Phase.SUCCEEDED, Reason.COMPLETED, msg, now)
        return
    if obs.failure is not None:
        _apply_summary(st, obs.summary)
        _apply_summary(st, obs.failure.summary)  # e.g. the failing rank's last checkpoint
        _on_failure(inp, job, st, plan, obs.failure)
        return
    if obs.queued:
        queue = rp.queue_name or "?"
        msg = f"waiting for admission by Kueue (queue {queue})"
        if st.phase != Phase.PENDING or st.message != msg:
            set_phase(st, Phase.PENDING, Reason.JOB_CREATED, msg, now)
    elif obs.waiting and not obs.running:
        msg = f"attempt {st.attempt}: waiting for pods: {obs.waiting}"[:500]
        if st.message != msg:
            set_phase(st, Phase.PENDING, Reason.JOB_CREATED, msg, now)
    elif obs.running:
        if inp.progress is not None:
            st.progress = inp.progress
        if st.phase != Phase.RUNNING:
            msg = f"attempt {st.attempt}: {job.spec.distributed.nodes} node(s) running"
            set_phase(st, Phase.RUNNING, Reason.PODS_RUNNING, msg, now)
            plan.events.append(Event("Normal", Reason.PODS_RUNNING, msg))
