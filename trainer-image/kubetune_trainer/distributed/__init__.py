"""Distributed training: the launcher's pod contract, torchrun, DeepSpeed, rank helpers.

`kubetune launch` reads the pod environment (contract.py), builds the torchrun command
(torchrun.py) and maps the ranks' outcome to one exit code (launcher.py, exitcodes.py).
Inside a rank, runtime.py says who writes and turns a lost peer into RETRYABLE;
deepspeed.py generates ZeRO configs. Heavy imports (torch) happen inside functions.
"""

from .contract import LaunchEnv, LaunchEnvError, read_launch_env
from .deepspeed import deepspeed_config
from .exitcodes import node_exit_code
from .local import local_launch
from .node_files import collect_node_files
from .runtime import (
    any_rank,
    barrier,
    ddp_timeout,
    exit_rank,
    is_distributed,
    is_main_process,
    is_peer_loss,
    local_rank,
    peer_loss_guard,
    rank,
    rank_session,
    shutdown,
    start_parent_watchdog,
    world_size,
)
from .torchrun import direct_command, torchrun_command
from .zero3 import adapter_state_dict, zero3_enabled

__all__ = [
    "LaunchEnv",
    "LaunchEnvError",
    "adapter_state_dict",
    "any_rank",
    "barrier",
    "collect_node_files",
    "ddp_timeout",
    "deepspeed_config",
    "direct_command",
    "exit_rank",
    "is_distributed",
    "is_main_process",
    "is_peer_loss",
    "local_launch",
    "local_rank",
    "node_exit_code",
    "peer_loss_guard",
    "rank",
    "rank_session",
    "read_launch_env",
    "shutdown",
    "start_parent_watchdog",
    "torchrun_command",
    "world_size",
    "zero3_enabled",
]
