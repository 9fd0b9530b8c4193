#!/usr/bin/env bash
# Start, stop or query a local vLLM OpenAI-compatible server (CPU build) prepared by vllm_setup.sh.
#
#   scripts/vllm_server.sh start [--model smollm2|smollm2-tiny] [--port 8011] [-- EXTRA_VLLM_ARGS...]
#   scripts/vllm_server.sh stop   [--port 8011]
#   scripts/vllm_server.sh status [--port 8011]
#
# `start` runs the server in its own process group, writes its PID to
# $DYNASOR_ENGINE_HOME/run/vllm-PORT.pid, waits until /health answers and prints the base URL.
# `smollm2` serves the real weights; `smollm2-tiny` a random-weight 2-layer model
# (--load-format dummy) that starts and generates faster, for load, abort and priority tests.
# `stop` signals that process group by the recorded PID and waits for it to exit.
# The dtype is bfloat16 where the CPU has native bf16 (avx512_bf16/amx), else float32;
# DYNASOR_ENGINE_DTYPE overrides it.
set -euo pipefail

HOME_DIR="${DYNASOR_ENGINE_HOME:-$HOME/.cache/dynasor}"
ENV_DIR="$HOME_DIR/vllm-env"
RUN_DIR="$HOME_DIR/run"
MODEL="smollm2"
PORT="8011"
WAIT_S="${DYNASOR_ENGINE_START_TIMEOUT:-300}"
EXTRA=()

log() { printf '[vllm_server] %s\n' "$*" >&2; }
die() { printf '[vllm_server] error: %s\n' "$*" >&2; exit 1; }

CMD="${1:-}"; shift || true
while [[ $# -gt 0 ]]; do
    case "$1" in
        --model) MODEL="$2"; shift 2 ;;
        --port) PORT="$2"; shift 2 ;;
        --) shift; EXTRA=("$@"); break ;;
        *) die "unknown argument: $1" ;;
    esac
done
PID_FILE="$RUN_DIR/vllm-$PORT.pid"
LOG_FILE="$RUN_DIR/vllm-$PORT.log"
URL="http://127.0.0.1:$PORT"

healthy() { "$ENV_DIR/bin/python" - "$URL" <<'PY' 2>/dev/null
import sys, urllib.request
try:
    sys.exit(0 if urllib.request.urlopen(sys.argv[1] + "/health", timeout=2).status == 200 else 1)
except Exception:
    sys.exit(1)
PY
}
running_pid() { [[ -f "$PID_FILE" ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null && cat "$PID_FILE"; }

start() {
    [[ -x "$ENV_DIR/bin/python" ]] || die "no engine venv at $ENV_DIR: run scripts/vllm_setup.sh first"
    local dir="$HOME_DIR/models/$MODEL" args=()
    [[ -f "$dir/config.json" ]] || die "no model folder $dir: run scripts/vllm_setup.sh first"
    if pid=$(running_pid); then
        # Started by someone else (maybe still loading): share it rather than race for the port.
        wait_healthy "$pid" || die "the server already starting on port $PORT (PID $pid) did not become healthy"
        log "already running on $URL (PID $pid)"; echo "$URL"; return 0
    fi
    [[ "$MODEL" == *-tiny ]] && args+=(--load-format dummy)
    # bfloat16 only where the CPU computes it natively; emulated, it is several times slower
    # than float32 (prefill and batched decode on AVX2-only CPUs).
    local dtype="${DYNASOR_ENGINE_DTYPE:-}"
    if [[ -z "$dtype" ]]; then
        if grep -qwE 'avx512_bf16|amx_bf16' /proc/cpuinfo 2>/dev/null; then dtype=bfloat16; else dtype=float32; fi
    fi
    mkdir -p "$RUN_DIR"
    log "starting $MODEL ($dtype) on $URL (log $LOG_FILE)"
    # setsid: own process group, so stop can take the engine core process down with it.
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-2}" \
    VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 \
        setsid "$ENV_DIR/bin/python" -m vllm.entrypoints.openai.api_server \
        --model "$dir" --served-model-name "$MODEL" --host 127.0.0.1 --port "$PORT" \
        --max-model-len 2048 --dtype "$dtype" --enforce-eager --scheduling-policy priority \
        "${args[@]}" "${EXTRA[@]}" >"$LOG_FILE" 2>&1 < /dev/null &
    local pid=$!
    echo "$pid" >"$PID_FILE"
    local t0=$SECONDS
    if ! wait_healthy "$pid"; then
        tail -n 30 "$LOG_FILE" >&2
        if kill -0 "$pid" 2>/dev/null; then
            stop
            die "the server did not become healthy within ${WAIT_S}s (log above, full log $LOG_FILE)"
        fi
        rm -f "$PID_FILE"
        die "the server exited during start-up (log above, full log $LOG_FILE)"
    fi
    log "healthy after $((SECONDS - t0))s (PID $pid)"
    echo "$URL"
}

# Wait until /health answers; fail if process $1 exits or WAIT_S passes.
wait_healthy() {
    local pid="$1" t0=$SECONDS
    until healthy; do
        kill -0 "$pid" 2>/dev/null || return 1
        (( SECONDS - t0 > WAIT_S )) && return 1
        sleep 1
    done
}

stop() {
    local pid
    if ! pid=$(running_pid); then
        rm -f "$PID_FILE"; log "no server running on port $PORT"; return 0
    fi
    log "stopping PID $pid (port $PORT)"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "PID $pid did not exit on SIGTERM; sending SIGKILL"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PID_FILE"
}

case "$CMD" in
    start) start ;;
    stop) stop ;;
    status)
        if pid=$(running_pid) && healthy; then echo "running $URL (PID $pid)"; else echo "not running"; exit 1; fi ;;
    *) die "usage: $0 start|stop|status [--model smollm2|smollm2-tiny] [--port N] [-- vllm args]" ;;
esac
