"""Publishing the trained model: ``checkpoints/latest`` changes in one step, never half a model.

The model and tokenizer are saved into a new version folder and ``latest`` is swapped to it (see
``llm_assets.atomic``); the previous version stays for a reader that is still loading it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llm_assets.atomic import new_version, remove_stale_staging

LATEST = "latest"


def publish_model(model: Any, tokenizer: Any, checkpoint_dir: Path) -> Path:
    """Save ``model`` (safetensors) and ``tokenizer`` as ``checkpoint_dir/latest``; return that path.

    Call it holding the checkpoint folder's training lock: no other publish is under way."""
    latest = Path(checkpoint_dir) / LATEST
    remove_stale_staging(latest)  # what a publish killed midway left (the caller holds the training lock)
    with new_version(latest) as folder:
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return latest
