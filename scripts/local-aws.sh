#!/usr/bin/env bash
# A local AWS for trying the controller: installs moto into .venv (once),
# starts moto_server on 127.0.0.1:${MOTO_PORT:-5000} (unless one answers there)
# and seeds the demo roles and tagged instances that examples/ refer to.
# Prints the environment to point the controller at it.
set -euo pipefail
cd "$(dirname "$0")/.."
port="${MOTO_PORT:-5000}"
bash scripts/python-env.sh >&2
if ! curl -fsS "http://127.0.0.1:${port}/moto-api/" >/dev/null 2>&1; then
  nohup .venv/bin/moto_server -H 127.0.0.1 -p "$port" >.venv/moto.log 2>&1 &
  echo $! >.venv/moto.pid
  for _ in $(seq 50); do
    curl -fsS "http://127.0.0.1:${port}/moto-api/" >/dev/null 2>&1 && break
    sleep 0.2
  done
fi
.venv/bin/python scripts/seed-demo.py "http://127.0.0.1:${port}" >&2
cat <<ENV
export AWS_ENDPOINT_URL=http://127.0.0.1:${port}
export AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
ENV
