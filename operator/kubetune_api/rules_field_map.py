"""The rule on dataset.fieldMap's keys: each must be a field of dataset.format (FORMAT_FIELDS;
under auto, any format's; plus papers.labelField for papers and auto).

The CEL does not iterate the map (its keys' number and length are unbounded, which the API
server's cost estimate would multiply): it counts the format's fields that are keys of the
map, a comprehension over a literal list of at most ~40 names with an O(1) map lookup each,
and compares that with the map's size. The message names the format and its fields rather
than the wrong keys: listing those needs a comprehension over the map and `join`, and the
API server iterates a map in no fixed order, so the text would differ from Python's.
"""

from __future__ import annotations

from typing import Any, Final, get_args

from .rule_core import Derived, Rule, cel_list, cel_string
from .spec_data import DatasetFormat, format_fields

_FORMATS: Final = get_args(DatasetFormat)
# {"auto": [...every format's fields...], "qa": ["question", "answer", "context"], ...}
FIELDS_BY_FORMAT_CEL: Final = (
    "{" + ", ".join(f"{cel_string(f)}: {cel_list(format_fields(f))}" for f in _FORMATS) + "}"
)
# The fields as the message lists them; under auto, the list would pass the 400 characters
# an error message is cut to (errors.py), so it says how to see the fields instead.
_FIELDS_TEXT: Final = (
    "{" + ", ".join(f"{cel_string(f)}: {cel_string(', '.join(format_fields(f)))}"
                    for f in _FORMATS if f != "auto") + "}"
)  # fmt: skip
_AUTO_TEXT: Final = "; set dataset.format to list them"
_ALLOWED = f"{FIELDS_BY_FORMAT_CEL}[{{format}}]"
# papers.labelField is a field too (format_fields adds it when it is set and not empty).
_LABELLED = "{?papers.labelField} && {papers.labelField} != '' && {format} in ['papers', 'auto']"


def _label(d: Any) -> str | None:
    return d.papers.label_field if d.papers else None


def _fields_text(d: Any) -> str:
    label = _label(d)
    if d.format == "auto":
        return "any format's" + (f", or {label}" if label else "") + _AUTO_TEXT
    return ", ".join(format_fields(d.format, label))


FIELD_MAP_RULE: Final = Rule(
    name="field-map-keys",
    at="spec.dataset",
    field=".fieldMap",
    # Every key is allowed when the allowed names among the keys are as many as the keys.
    rule=f"size({{fieldMap}}) == size({_ALLOWED}.filter(k, k in {{fieldMap}})) + "
    f"({_LABELLED} && {{papers.labelField}} in {{fieldMap}} && "
    f"!({{papers.labelField}} in {_ALLOWED}) ? 1 : 0)",
    message="a key is not a field of {=whichFormat}; keys are the format's fields "
    "({=formatFields}), values the source's fields, e.g. {question: Q}",
    check=lambda d: all(k in format_fields(d.format, _label(d)) for k in d.field_map),
    values={
        "whichFormat": Derived(
            cel="{format} == 'auto' ? 'any format' : 'format ' + {format}",
            python=lambda d: "any format" if d.format == "auto" else f"format {d.format}",
        ),
        "formatFields": Derived(
            cel=f"{{format}} == 'auto' ? \"any format's\" + ({_LABELLED} ? ', or ' + "
            f"{{papers.labelField}} : '') + {cel_string(_AUTO_TEXT)} : {_FIELDS_TEXT}[{{format}}] "
            f"+ ({_LABELLED} ? ', ' + {{papers.labelField}} : '')",
            python=_fields_text,
        ),
    },
)
