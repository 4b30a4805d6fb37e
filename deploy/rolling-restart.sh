#!/usr/bin/env bash
# Rolling restart of the compose `scale` profile: restart each convnet-replica in turn (SIGTERM,
# the server's drain, start) and wait until HAProxy sends it calls again before the next one.
# Nothing else is needed: HAProxy stops sending a replica new calls within a second of its drain
# starting (deploy/haproxy/haproxy.cfg), so no call is lost (docs/DEPLOY.md, "Rolling restart").
#   bash deploy/rolling-restart.sh
# Environment: COMPOSE (default "docker compose"), DOCKER (default docker; podman works too),
# STOP_TIMEOUT_S (15, the replicas' stop_grace_period), CONVNET_LB_STATS_PORT (8404: HAProxy's
# statistics page, published on 127.0.0.1), WAIT_S (120: the longest wait for one step).
set -euo pipefail
COMPOSE=${COMPOSE:-docker compose}
DOCKER=${DOCKER:-docker}
STOP_TIMEOUT_S=${STOP_TIMEOUT_S:-15}
STATS="http://127.0.0.1:${CONVNET_LB_STATS_PORT:-8404}/;csv"
WAIT_S=${WAIT_S:-120}

replicas=$($COMPOSE --profile scale ps -q convnet-replica)
count=$(wc -w <<<"$replicas")
[ "$count" -gt 0 ] || { echo "rolling-restart: no convnet-replica container (docker compose --profile scale up -d)" >&2; exit 1; }

every_replica_up() {  # HAProxy has $count servers UP in both backends (CSV field 18: status)
  curl -fsS --max-time 5 "$STATS" | awk -F, -v n="$count" '
    $1 ~ /_replicas$/ && $2 != "FRONTEND" && $2 != "BACKEND" && $18 == "UP" { up[$1]++ }
    END { exit !(up["grpc_replicas"] >= n && up["http_replicas"] >= n) }'
}

wait_until() {  # wait_until WHAT COMMAND...: poll once a second, at most WAIT_S seconds
  local what=$1 deadline=$((SECONDS + WAIT_S))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "rolling-restart: timed out waiting for $what" >&2; exit 1; }
    sleep 1
  done
}

wait_until "every replica up in HAProxy ($STATS)" every_replica_up
for c in $replicas; do
  $DOCKER restart -t "$STOP_TIMEOUT_S" "$c" >/dev/null
  wait_until "$c to serve" $DOCKER exec "$c" python deploy/healthcheck.py --target 127.0.0.1:8001
  wait_until "$c up in HAProxy" every_replica_up
  echo "rolling-restart: $c restarted and serving"
done
