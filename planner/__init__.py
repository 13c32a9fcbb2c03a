"""pdplan: capacity planning for LLM inference serving.

The library surface lives in :mod:`planner.api`; the command line in :mod:`planner.cli`.
Nothing heavy is imported here so that ``pdplan --help`` starts fast.
"""

__version__ = "0.1.0"
