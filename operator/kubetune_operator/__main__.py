"""`python -m kubetune_operator`: run the operator (the `kopf run` equivalent).

python -m kubetune_operator --all-namespaces --metrics-port 8080 --liveness-port 8081
python -m kubetune_operator --namespace team-a --namespace team-b --standalone
"""

from __future__ import annotations

import argparse
import logging

import kopf

from . import DEFAULT_IMAGE
from . import main as _routing  # noqa: F401  (registers the handlers)
from .config import OperatorConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="kubetune-operator", description=__doc__.splitlines()[0])
    scope = p.add_mutually_exclusive_group(required=True)
    scope.add_argument("-n", "--namespace", action="append", default=[],
                       help="watch this namespace (repeatable; globs allowed)")  # fmt: skip
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch the cluster")
    p.add_argument("--metrics-port", type=int, default=8080, help="/metrics port (0: off)")
    p.add_argument("--liveness-port", type=int, default=8081, help="/healthz port (0: off)")
    p.add_argument("--bind", default="0.0.0.0", help="address of the metrics/health servers")
    p.add_argument("--reconcile-interval", type=float, default=10.0,
                   help="seconds between looks at a running job without events")  # fmt: skip
    p.add_argument("--image", default=DEFAULT_IMAGE, help="default trainer image")
    p.add_argument("--standalone", action="store_true", help="no peering (single replica)")
    p.add_argument("--peering", default="kubetune", help="KopfPeering name for HA replicas")
    p.add_argument("--priority", type=int, default=0, help="peering priority of this replica")
    # Security: what the operator's own credentials and the trainer pods may reach.
    p.add_argument("--s3-endpoint-allow", action="append", default=[], metavar="URL",
                   help="an S3 endpoint cleanup on deletion may use (repeatable; "
                   "default: AWS S3 only)")  # fmt: skip
    p.add_argument("--allowed-image", action="append", default=[], metavar="PATTERN",
                   help="trainer images FineTuneJobs may use, fnmatch pattern (repeatable; "
                   "default: any)")  # fmt: skip
    p.add_argument("--allowed-service-account", action="append", default=[], metavar="NAME",
                   help="service accounts FineTuneJobs may run as (repeatable; "
                   "default: any)")  # fmt: skip
    p.add_argument("--api-timeout", type=float, default=30.0,
                   help="seconds before a Kubernetes API request is retried")  # fmt: skip
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    config = OperatorConfig(
        reconcile_interval=args.reconcile_interval,
        image=args.image,
        metrics_port=args.metrics_port or None,
        metrics_addr=args.bind,
        peering_name=args.peering,
        api_timeout=args.api_timeout,
        s3_endpoint_allow=tuple(args.s3_endpoint_allow),
        allowed_images=tuple(args.allowed_image),
        allowed_service_accounts=tuple(args.allowed_service_account),
    )
    liveness = f"http://{args.bind}:{args.liveness_port}/healthz" if args.liveness_port else None
    kopf.run(
        clusterwide=args.all_namespaces,
        namespaces=args.namespace,
        standalone=args.standalone,
        peering_name=None if args.standalone else args.peering,
        priority=args.priority,
        liveness_endpoint=liveness,
        memo=kopf.Memo(config=config),
    )


if __name__ == "__main__":
    main()
