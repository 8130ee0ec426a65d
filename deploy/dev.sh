#!/usr/bin/env bash
# One entry point for a fresh machine: installs what slatestream needs (cached outside the
# clone) and runs the demo or the tests.
#   bash deploy/dev.sh demo [args...]   # the main job (embedded default, no broker needed)
#   bash deploy/dev.sh test [pytest args...]
#   bash deploy/dev.sh setup            # only install
#   bash deploy/dev.sh run ARGS...      # any slatestream command
#   bash deploy/dev.sh bench [--full]   # every benchmark, rewrites BENCHMARKS.md
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${SLATESTREAM_CACHE:-$HOME/.cache/slatestream}"
PY="${PYTHON:-python3}"
mkdir -p "$CACHE"

log() { echo "[slatestream] $*" >&2; }

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
if ((${#need_apt[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    log "missing system packages: ${need_apt[*]} (install them with apt-get as root)"; exit 1
  fi
  log "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# Debian's packages start their services on install where systemd runs; we run our own.
pkill -x prometheus 2>/dev/null || true

# Python venv, keyed by the lock file and the Python version, reused across clones.
HASH="$( (cat "$ROOT/requirements.lock"; "$PY" -c 'import sys; print(sys.version)') \
        | sha256sum | cut -c1-16)"
VENV="$CACHE/venv-$HASH"
if [[ ! -f "$VENV/.complete" ]]; then
  log "creating venv $VENV (first run: downloads torch, a few minutes)"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -r "$ROOT/requirements.lock"
  touch "$VENV/.complete"
fi
export PATH="$VENV/bin:$PATH"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export SLATESTREAM_STATE_DIR="${SLATESTREAM_STATE_DIR:-$CACHE}"

# Kafka jars from Maven Central (cached by version) and the MovieLens-100k wheel (offline data).
python -c 'from deploy import stack; print(stack.ensure_kafka_jars())' >/dev/null
DATA="${SLATESTREAM_DATA_DIR:-$CACHE/datasets}"
if ! ls "$DATA"/recbole-1.2.1-*.whl >/dev/null 2>&1; then
  log "fetching MovieLens-100k (inside the recbole wheel on PyPI) into $DATA"
  pip download -q --no-deps recbole==1.2.1 -d "$DATA"
fi
export SLATESTREAM_DATA_DIR="$DATA"

cmd="${1:-setup}"; shift || true
cd "$ROOT"
case "$cmd" in
  setup) log "ready: $VENV" ;;
  demo) exec python -m streams demo "$@" ;;
  run) exec python -m streams "$@" ;;
  bench) exec python -m bench "$@" ;;
  test)
    set +e
    python -m pytest -q -p no:cacheprovider "$@"
    rc=$?
    set -e
    if [[ $rc -eq 5 ]]; then log "pytest collected no tests: failing"; exit 1; fi
    exit $rc ;;
  *) log "unknown command $cmd (setup|demo|test|run|bench)"; exit 2 ;;
esac
