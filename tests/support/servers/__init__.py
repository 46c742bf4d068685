"""Real servers for tests, on free 127.0.0.1 ports, started and stopped by PID.

Plain context managers (reusable from any test or script) live in `servers.py`; thin pytest
fixtures over them in `plugin.py` (loaded for the whole suite by tests/conftest.py).
"""

from .servers import (
    MlflowServer,
    Prometheus,
    Pushgateway,
    S3Server,
    TcpProxy,
    free_port,
    mlflow_server,
    prometheus_server,
    pushgateway_server,
    s3_server,
    wait_until,
)

__all__ = [
    "MlflowServer",
    "Prometheus",
    "Pushgateway",
    "S3Server",
    "TcpProxy",
    "free_port",
    "mlflow_server",
    "prometheus_server",
    "pushgateway_server",
    "s3_server",
    "wait_until",
]
