"""Names shared by the API, the operator and the trainer.

Everything here is part of the contract between components: the CRD's identity,
labels, condition types and reasons, the trainer's exit codes and the
environment variables the operator sets in each pod (the launcher reads them).
"""

from __future__ import annotations

from typing import Final

GROUP: Final = "kubetune.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "FineTuneJob"
PLURAL: Final = "finetunejobs"
SINGULAR: Final = "finetunejob"
SHORT_NAMES: Final = ("ftj",)
CRD_NAME: Final = f"{PLURAL}.{GROUP}"

FINALIZER: Final = f"{GROUP}/finalizer"
ANNOTATION_PREFIX: Final = GROUP

# Labels put on every child object.
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_JOB: Final = f"{GROUP}/job"
LABEL_ATTEMPT: Final = f"{GROUP}/attempt"
LABEL_KUEUE_QUEUE: Final = "kueue.x-k8s.io/queue-name"
# A Kueue WorkloadPriorityClass: copied from the FineTuneJob's labels to each attempt's Job.
LABEL_KUEUE_PRIORITY: Final = "kueue.x-k8s.io/priority-class"


class Phase:
    PENDING: Final = "Pending"
    RUNNING: Final = "Running"
    SUCCEEDED: Final = "Succeeded"
    FAILED: Final = "Failed"
    SUSPENDED: Final = "Suspended"
    ALL: Final = (PENDING, RUNNING, SUCCEEDED, FAILED, SUSPENDED)
    FINISHED: Final = (SUCCEEDED, FAILED)


class ConditionType:
    CREATED: Final = "Created"
    RUNNING: Final = "Running"
    SUCCEEDED: Final = "Succeeded"
    FAILED: Final = "Failed"
    SUSPENDED: Final = "Suspended"
    RESTARTING: Final = "Restarting"
    SPEC_REJECTED: Final = "SpecChangeRejected"
    # An object with a child's name exists but is not ours: it is never adopted or read.
    CHILD_CONFLICT: Final = "ChildConflict"
    # Deletion only: whether the artifacts' cleanup (cleanupPolicy: delete) ran.
    CLEANUP: Final = "ArtifactsCleanedUp"
    # kstatus' summary conditions (sigs.k8s.io/cli-utils/pkg/kstatus, read by Flux and
    # kpt), derived from the phase after every decision (kubetune_operator.status):
    # Ready True once Succeeded (the adapter exists: the goal of the object), else False;
    # Reconciling True while Pending or Running (kstatus InProgress); Stalled True once
    # Failed or while a child's name is taken (kstatus Failed). Suspended: Ready False
    # alone (InProgress until resumed). Reconciling/Stalled are "abnormal-true": absent
    # until first True, then False.
    READY: Final = "Ready"
    RECONCILING: Final = "Reconciling"
    STALLED: Final = "Stalled"


class Reason:
    INVALID_SPEC: Final = "InvalidSpec"
    JOB_CREATED: Final = "JobCreated"
    PODS_RUNNING: Final = "PodsRunning"
    COMPLETED: Final = "Completed"
    OUT_OF_MEMORY: Final = "OutOfMemory"
    BAD_DATA: Final = "BadData"
    TRAINER_ERROR: Final = "TrainerError"
    RETRYABLE_FAILURE: Final = "RetryableFailure"
    PREEMPTED: Final = "Preempted"
    MAX_RESTARTS: Final = "MaxRestartsExceeded"
    DEADLINE_EXCEEDED: Final = "DeadlineExceeded"
    SUSPENDED: Final = "Suspended"
    RESUMED: Final = "Resumed"
    IMMUTABLE_FIELD: Final = "ImmutableFieldChanged"
    CHILD_CONFLICT: Final = "ChildConflict"  # a child's name is taken by a foreign object
    CHILD_CONFLICT_RESOLVED: Final = "ChildConflictResolved"
    API_REJECTED: Final = "ApiRejected"  # the API server refused a child (400/403/422)
    FORBIDDEN: Final = "Forbidden"  # image or service account outside the operator's allow-list
    CLEANUP_DENIED: Final = "CleanupDenied"  # s3Endpoint not allowed for operator cleanup
    STORAGE_ERROR: Final = "StorageError"  # disk full or no permission to write (exit 73)


class ExitCode:
    """Trainer process exit codes: how the operator tells failures apart.

    Permanent codes (INVALID_SPEC, BAD_DATA, OOM, STORAGE) end the FineTuneJob at once;
    RETRYABLE and any code not listed start a new attempt from the latest
    committed checkpoint; PREEMPTED resumes without counting a restart.
    """

    OK: Final = 0
    INVALID_SPEC: Final = 64  # EX_USAGE: the spec or the hardware cannot work
    BAD_DATA: Final = 65  # EX_DATAERR: the dataset failed validation
    OOM: Final = 66  # the model does not fit (preflight or runtime OOM)
    INTERNAL: Final = 70  # EX_SOFTWARE: a bug; retried like an unknown failure
    # EX_CANTCREAT: no space left (ENOSPC, EDQUOT) or no permission (EACCES, EPERM, EROFS)
    # writing checkpoints, the adapter or staging files: a retry would hit the same wall.
    STORAGE: Final = 73
    RETRYABLE: Final = 75  # EX_TEMPFAIL: peer lost, rendezvous/storage errors
    PREEMPTED: Final = 76  # SIGTERM: checkpoint saved, resume without counting
    PERMANENT: Final = (INVALID_SPEC, BAD_DATA, OOM, STORAGE)


class TrainerMetric:
    """The trainer's metric samples the operator reads from rank 0's /metrics (to fill
    status.progress), as exposed: a counter's samples end in _total. The trainer's
    kubetune_trainer.reporting.prometheus.METRICS must export each
    (tests/unit/test_pod_contract.py)."""

    STEP: Final = "kubetune_train_step"
    TOTAL_STEPS: Final = "kubetune_train_total_steps"
    EPOCH: Final = "kubetune_train_epoch"
    LOSS: Final = "kubetune_train_loss"
    EVAL_LOSS: Final = "kubetune_eval_loss"
    TOKENS: Final = "kubetune_train_tokens_total"  # a counter: tokens/s is its rate
    ETA: Final = "kubetune_train_eta_seconds"  # the trainer's own estimate, set before step 1
    OPERATOR_READS: Final = (STEP, TOTAL_STEPS, EPOCH, LOSS, EVAL_LOSS, TOKENS, ETA)


class Env:
    """Environment the operator sets in every trainer pod (the launcher's contract)."""

    SPEC_FILE: Final = "KUBETUNE_SPEC_FILE"  # the FineTuneJob as JSON (ConfigMap mount)
    NAMESPACE: Final = "KUBETUNE_NAMESPACE"
    JOB_NAME: Final = "KUBETUNE_JOB_NAME"  # the FineTuneJob's name
    JOB_UID: Final = "KUBETUNE_JOB_UID"  # its metadata.uid: resume only this incarnation's
    ATTEMPT: Final = "KUBETUNE_ATTEMPT"  # 1-based attempt number
    NNODES: Final = "KUBETUNE_NNODES"
    NPROC_PER_NODE: Final = "KUBETUNE_NPROC_PER_NODE"
    NODE_RANK: Final = "JOB_COMPLETION_INDEX"  # set by Kubernetes for Indexed Jobs
    MASTER_ADDR: Final = "KUBETUNE_MASTER_ADDR"  # pod 0 through the headless Service
    MASTER_PORT: Final = "KUBETUNE_MASTER_PORT"
    RDZV_TIMEOUT: Final = "KUBETUNE_RDZV_TIMEOUT"  # seconds before a lost peer is fatal
    METRICS_PORT: Final = "KUBETUNE_METRICS_PORT"
    OUTPUT_URI: Final = "KUBETUNE_OUTPUT_URI"  # overrides spec.output.uri (tests, local runs)
    S3_ENDPOINT: Final = "AWS_ENDPOINT_URL"  # boto3 reads it natively
    TERMINATION_LOG: Final = "KUBETUNE_TERMINATION_LOG"
    # kubetune's own cache (built and converted bases, the quantized-base cache, staged
    # checkpoints): on the /cache volume, which the platform may back with a PVC.
    CACHE: Final = "KUBETUNE_CACHE"
    # Credentials the spec had inside URLs (user:password@), from the job's own Secret:
    # the ConfigMap holds the URLs without them (kubetune_api.uris.strip_spec_credentials).
    MLFLOW_USERNAME: Final = "MLFLOW_TRACKING_USERNAME"  # read by MLflow's client itself
    MLFLOW_PASSWORD: Final = "MLFLOW_TRACKING_PASSWORD"
    PUSHGATEWAY_USERNAME: Final = "KUBETUNE_PUSHGATEWAY_USERNAME"
    PUSHGATEWAY_PASSWORD: Final = "KUBETUNE_PUSHGATEWAY_PASSWORD"


DEFAULT_MASTER_PORT: Final = 29500
DEFAULT_METRICS_PORT: Final = 9400
SPEC_MOUNT_DIR: Final = "/etc/kubetune"
SPEC_FILE_NAME: Final = "finetunejob.json"
TERMINATION_LOG_PATH: Final = "/dev/termination-log"
