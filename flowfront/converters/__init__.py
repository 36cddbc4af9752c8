"""Converters from the recorded datasets in the data directory to outcome tables.

``convert_routerbench`` reads ``routerbench/{arc_challenge,winogrande,mbpp}_{train,test}.csv``;
``convert_llmrouter`` joins ``llmrouter/{train,test}_scores.json`` with ``queries_*.jsonl`` and
prices calls with ``models.json``. Both are pure: they read files and return an
:class:`~flowfront.outcome_tables.OutcomeTable`; what they derive or estimate is listed in
``docs/outcome-tables.md`` and in each table's summary notes.
"""


from flowfront.converters.llmrouter import (
    DEFAULT_COMPLETION_TOKENS,
    DROPPED_NO_QUERY,
    DROPPED_OVERLAP,
    LLMROUTER_COMPLETION_TOKENS,
    convert_llmrouter,
)
from flowfront.converters.routerbench import DROPPED_MERGED, ROUTERBENCH_TASKS, SPLITS, convert_routerbench

__all__ = [
    "DEFAULT_COMPLETION_TOKENS",
    "DROPPED_MERGED",
    "DROPPED_NO_QUERY",
    "DROPPED_OVERLAP",
    "LLMROUTER_COMPLETION_TOKENS",
    "ROUTERBENCH_TASKS",
    "SPLITS",
    "convert_llmrouter",
    "convert_routerbench",
]
