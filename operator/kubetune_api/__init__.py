"""kubetune_api: the FineTuneJob contract (models, constants, CRD generation).

Imports neither kopf, kubernetes nor torch: every other component depends on it.
"""

from .constants import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    ConditionType,
    Env,
    ExitCode,
    Phase,
    Reason,
)
from .errors import SpecError
from .loader import InvalidSpecError, load_file, load_job, parse_job, parse_spec
from .spec import FineTuneJob, FineTuneJobSpec
from .status import Condition, FineTuneJobStatus, Progress
from .uris import run_prefix

__version__ = "0.1.0"

__all__ = [
    "API_VERSION", "GROUP", "KIND", "PLURAL", "VERSION", "Condition", "ConditionType", "Env",
    "ExitCode", "FineTuneJob", "FineTuneJobSpec", "FineTuneJobStatus", "InvalidSpecError",
    "Phase", "Progress", "Reason", "SpecError", "load_file", "load_job", "parse_job",
    "parse_spec", "run_prefix",
]  # fmt: skip
