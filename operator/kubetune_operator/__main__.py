"""`python -m kubetune_operator`: run the operator (the `kopf run` equivalent).

python -m kubetune_operator --all-namespaces --metrics-port 8080 --liveness-port 8081
python -m kubetune_operator --namespace team-a --namespace team-b --standalone

Without `--standalone`, replicas elect a leader through a Lease (leader.py): only the
holder runs kopf, the others wait and take over when it stops or goes silent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

import kopf

from kubetune_api import allocator
from kubetune_api.trainer_defaults import (
    TrainerDefaults,
    TrainerDefaultsError,
    load_trainer_defaults,
)

from . import DEFAULT_IMAGE, leader, netpol
from . import main as _routing  # noqa: F401  (registers the handlers)
from .config import MALLOC_SETTINGS, OperatorConfig
from .handlers.setup import SharedMemo, healthz

# Where a pod's own namespace is (the service-account mount): the Lease's default home.
POD_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="kubetune-operator", description=__doc__.splitlines()[0])
    scope = p.add_mutually_exclusive_group(required=True)
    scope.add_argument("-n", "--namespace", action="append", default=[],
                       help="watch this namespace (repeatable; kopf's patterns allowed, "
                       "then Jobs and pods are watched cluster-wide and filtered)")  # fmt: skip
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch the cluster")
    p.add_argument("--metrics-port", type=int, default=8080, help="/metrics port (0: off)")
    p.add_argument("--liveness-port", type=int, default=8081, help="/healthz port (0: off)")
    p.add_argument("--bind", default="0.0.0.0", help="address of the metrics/health servers")
    p.add_argument("--reconcile-interval", type=float, default=OperatorConfig.reconcile_interval,
                   help="seconds between looks at a running job without events")  # fmt: skip
    p.add_argument("--status-interval", type=float, default=OperatorConfig.status_interval,
                   help="seconds between progress-only status writes of a running job, "
                   "longer when running jobs would take over half of --qps (phase and "
                   "condition changes are written at once)")  # fmt: skip
    p.add_argument("--image", default=DEFAULT_IMAGE, help="default trainer image")
    p.add_argument("--trainer-defaults", metavar="FILE",
                   help="YAML of trainer-pod defaults for every job: pull secrets, env, "
                   "/cache volume, placement, GPU resource name (docs/operations.md)")  # fmt: skip
    net = p.add_argument_group("network (netpol.py)")
    net.add_argument("--network-policy", action="store_true",
                     help="a NetworkPolicy per FineTuneJob (only its own pods)")  # fmt: skip
    net.add_argument("--metrics-peer", action="append", default=[], type=metrics_peer,
                     help="NetworkPolicyPeer (JSON) let in to trainer metrics")  # fmt: skip
    ha = p.add_argument_group("high availability (leader election through a Lease)")
    ha.add_argument("--standalone", action="store_true",
                    help="no leader election: the only replica (two would both act)")  # fmt: skip
    ha.add_argument("--lease-name", default="kubetune-operator", help="the Lease's name")
    ha.add_argument("--lease-namespace", default="",
                    help="the Lease's namespace (default: the pod's own namespace)")  # fmt: skip
    ha.add_argument("--lease-duration", type=float, default=15.0,
                    help="seconds before a silent leader is replaced")  # fmt: skip
    ha.add_argument("--renew-deadline", type=float, default=10.0,
                    help="seconds a leader keeps going without renewing, then exits")  # fmt: skip
    ha.add_argument("--retry-period", type=float, default=2.0,
                    help="seconds between lease tries and renewals")  # fmt: skip
    # Security: what the operator's own credentials and the trainer pods may reach.
    p.add_argument("--s3-endpoint-allow", action="append", default=[], metavar="URL",
                   help="an S3 endpoint cleanup on deletion may use (repeatable; "
                   "default: AWS S3 only)")  # fmt: skip
    p.add_argument("--model-config-root", action="append", default=[], metavar="DIR",
                   help="a local folder whose models' config.json the memory preflight may "
                   "read before creating a Job (repeatable; s3:// bases need none)")  # fmt: skip
    p.add_argument("--allowed-image", action="append", default=[], metavar="PATTERN",
                   help="trainer images FineTuneJobs may use, fnmatch pattern (repeatable; "
                   "default: any)")  # fmt: skip
    p.add_argument("--allowed-service-account", action="append", default=[], metavar="NAME",
                   help="service accounts FineTuneJobs may run as (repeatable; "
                   "default: any)")  # fmt: skip
    p.add_argument("--api-timeout", type=float, default=OperatorConfig.api_timeout,
                   help="seconds before a Kubernetes API request is retried")  # fmt: skip
    p.add_argument("--qps", type=float, default=OperatorConfig.api_qps,
                   help="Kubernetes API requests per second the operator's client sends at "
                   "most, after a burst (like controller-runtime's QPS)")  # fmt: skip
    p.add_argument("--burst", type=int, default=OperatorConfig.api_burst,
                   help="requests sent at once before --qps applies")  # fmt: skip
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.qps <= 0 or args.burst < 1:
        p.error(f"--qps must be > 0 and --burst >= 1 (got {args.qps:g} and {args.burst})")
    if args.status_interval < 0:
        p.error(f"--status-interval must be >= 0 seconds (got {args.status_interval:g})")
    if not args.standalone:
        args.lease = lease_config(args)
        for problem in args.lease.problems():
            p.error(f"{problem} (--lease-duration, --renew-deadline, --retry-period)")
    return args


def metrics_peer(text: str) -> dict[str, Any]:
    """--metrics-peer '{"namespaceSelector": {...}, "podSelector": {...}}'."""
    try:
        peer = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON ({exc}): {text[:200]}") from None
    problem = netpol.peer_problem(peer)
    if problem:
        raise argparse.ArgumentTypeError(f"{problem}: {text[:200]}")
    return peer


def lease_config(args: argparse.Namespace) -> leader.LeaseConfig:
    namespace = args.lease_namespace
    if not namespace and POD_NAMESPACE_FILE.is_file():
        namespace = POD_NAMESPACE_FILE.read_text().strip()
    plain = [n for n in args.namespace if not any(ch in n for ch in "*?[!")]
    return leader.LeaseConfig(
        name=args.lease_name,
        namespace=namespace or (plain[0] if plain else "default"),
        duration=args.lease_duration,
        renew_deadline=args.renew_deadline,
        retry_period=args.retry_period,
    )


async def run_elected(args: argparse.Namespace, memo: kopf.Memo) -> None:
    """Wait for the Lease, then run kopf; SIGTERM stops a standby or the leader cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)  # kopf installs its own once it runs
    health = (
        await leader.serve_health(args.bind, args.liveness_port, lambda: healthz(memo))
        if args.liveness_port
        else None
    )
    try:
        await leader.run_with_lease(args.lease, stop, memo, **memo.config.kopf_scope())
    finally:
        if health is not None:
            health.close()
            await health.wait_closed()


def fail(message: str) -> NoReturn:
    """Stop at start-up as argparse does: the message on stderr, exit code 2."""
    print(f"kubetune-operator: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def operator_config(args: argparse.Namespace) -> OperatorConfig:
    """The options, with the trainer-defaults file read and checked: a bad file, or defaults
    the allow-lists refuse, stop the operator here, naming the field."""
    defaults = TrainerDefaults()
    if args.trainer_defaults:
        try:
            defaults = load_trainer_defaults(args.trainer_defaults)
        except TrainerDefaultsError as exc:
            fail(f"--trainer-defaults: {exc}")
    config = OperatorConfig(
        reconcile_interval=args.reconcile_interval,
        status_interval=args.status_interval,
        api_qps=args.qps,
        api_burst=args.burst,
        image=args.image,
        metrics_port=args.metrics_port or None,
        metrics_addr=args.bind,
        network_policy=args.network_policy,
        metrics_peers=tuple(args.metrics_peer),
        api_timeout=args.api_timeout,
        namespaces=() if args.all_namespaces else tuple(args.namespace),
        s3_endpoint_allow=tuple(args.s3_endpoint_allow),
        model_config_roots=tuple(args.model_config_root),
        allowed_images=tuple(args.allowed_image),
        allowed_service_accounts=tuple(args.allowed_service_account),
        trainer_defaults=defaults,
    )
    problems = config.policy.default_problems()
    if problems:
        fail("; ".join(problems))
    return config


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    logging.getLogger(__name__).info("memory allocator: %s", allocator.in_use())
    config = operator_config(args)
    memo = SharedMemo(config=config)  # one memo for every object's handlers (issue 21)
    if not args.standalone:
        asyncio.run(run_elected(args, memo))
        return
    liveness = f"http://{args.bind}:{args.liveness_port}/healthz" if args.liveness_port else None
    kopf.run(
        **config.kopf_scope(),
        standalone=True,
        liveness_endpoint=liveness,
        memo=memo,
    )


if __name__ == "__main__":
    allocator.reexec("kubetune_operator", sys.argv[1:], settings=MALLOC_SETTINGS)
    main()
