"""Start real servers (moto S3, MLflow, Prometheus, Pushgateway) on 127.0.0.1 for tests.

Each one runs as a child process in its own session on a free loopback port; readiness
is polled over HTTP (never a fixed sleep); stopping signals that process group by id, so
only what the test started is ever stopped. Logs go to a file shown when start-up fails.

This module gathers them for `from tests.support.servers import ...`.
"""

from ._process import HOST, Process, free_port, http_get, wait_until
from .mlflow_tracking import MlflowServer, mlflow_server
from .network import TcpProxy
from .prometheus import Prometheus, Pushgateway, prometheus_server, pushgateway_server
from .s3 import S3Server, s3_server

__all__ = [
    "HOST",
    "MlflowServer",
    "Process",
    "Prometheus",
    "Pushgateway",
    "S3Server",
    "TcpProxy",
    "free_port",
    "http_get",
    "mlflow_server",
    "prometheus_server",
    "pushgateway_server",
    "s3_server",
    "wait_until",
]
