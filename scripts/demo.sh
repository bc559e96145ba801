#!/usr/bin/env bash
# The local demo: starts redis-server, nats-server -js, an SMTP sink, the
# router, the notifier (SOP time 60x faster, so reminders and escalations
# show within seconds) and the e-SAKIP worker (data under var/demo), deploys
# the seed SOPs with sopctl, runs all three end to end with scripted actors
# (the archiver files each completed run in its hash-chained archive)
# (the Bagian and Fungsional report realisasi; the aggregator builds the
# Draft Data Kinerja reports and writes them as CSV, XLSX and HTML)
# while `sopctl watch` prints every notification as it happens, prints the
# timelines, and stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
BIN_ROUTER=$BUILD/services/router/sopflow-router
BIN_SOPCTL=$BUILD/tools/sopctl/sopctl
BIN_DEMO=$BUILD/tools/demo/sopflow-demo
BIN_WORKER=$BUILD/examples/esakip_worker/sopflow-esakip-worker
BIN_NOTIFIER=$BUILD/services/notifier/sopflow-notifier
BIN_AGGREGATOR=$BUILD/services/aggregator/sopflow-aggregator
BIN_ARCHIVER=$BUILD/services/archiver/sopflow-archiver
VAR=${SOPFLOW_DEMO_VAR:-var/demo}
rm -rf "$VAR" && mkdir -p "$VAR/redis" "$VAR/nats" "$VAR/logs"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 12000))  # below the ephemeral range (32768+): no outgoing connection takes it meanwhile
    if port_free "$p"; then echo "$p"; return; fi
  done
  echo "no free port" >&2; exit 1
}
wait_port() {
  for _ in $(seq 1 500); do
    if ! port_free "$1"; then return 0; fi
    sleep 0.02
  done
  echo "nothing listens on port $1; see $VAR/logs" >&2; exit 1
}

REDIS_PORT=$(pick_port); NATS_PORT=$(pick_port); ROUTER_PORT=$(pick_port)
NOTIFIER_PORT=$(pick_port); SMTP_PORT=$(pick_port); AGGREGATOR_PORT=$(pick_port); ARCHIVER_PORT=$(pick_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$VAR/redis" --save "" \
  --appendonly yes --appendfsync everysec > "$VAR/logs/redis.log" 2>&1 &
pids+=($!)
nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$VAR/nats" > "$VAR/logs/nats.log" 2>&1 &
pids+=($!)
/usr/bin/python3 -m aiosmtpd -n -l "127.0.0.1:$SMTP_PORT" -c aiosmtpd.handlers.Mailbox "$VAR/mail" \
  > "$VAR/logs/smtp.log" 2>&1 &
pids+=($!)
wait_port "$REDIS_PORT"; wait_port "$NATS_PORT"; wait_port "$SMTP_PORT"
echo "redis-server on $REDIS_PORT, nats-server -js on $NATS_PORT, SMTP sink on $SMTP_PORT (data in $VAR)"

export SOPFLOW_ROUTER=127.0.0.1:$ROUTER_PORT
"$BIN_ROUTER" --listen "$SOPFLOW_ROUTER" --redis "127.0.0.1:$REDIS_PORT" --nats "nats://127.0.0.1:$NATS_PORT" \
  --tokens deploy/overlays/dev/tokens.yaml --calendar deploy/base/calendar/calendar.yaml > "$VAR/logs/router.log" 2>&1 &
pids+=($!)
export SOPFLOW_NOTIFIER=127.0.0.1:$NOTIFIER_PORT
"$BIN_NOTIFIER" --listen "$SOPFLOW_NOTIFIER" --redis "127.0.0.1:$REDIS_PORT" --nats "nats://127.0.0.1:$NATS_PORT" \
  --tokens deploy/overlays/dev/tokens.yaml --calendar deploy/base/calendar/calendar.yaml \
  --templates deploy/base/notifier/templates --smtp-url "smtp://127.0.0.1:$SMTP_PORT" \
  --time-factor 60 --timer-interval-ms 200 --router "$SOPFLOW_ROUTER" --service-token demo-notifier \
  > "$VAR/logs/notifier.log" 2>&1 &
pids+=($!)
export SOPFLOW_AGGREGATOR=127.0.0.1:$AGGREGATOR_PORT
"$BIN_AGGREGATOR" --listen "$SOPFLOW_AGGREGATOR" --redis "127.0.0.1:$REDIS_PORT" --nats "nats://127.0.0.1:$NATS_PORT" \
  --tokens deploy/overlays/dev/tokens.yaml --catalogues deploy/base/aggregator/catalogues \
  --router "$SOPFLOW_ROUTER" --router-token demo-aggregator > "$VAR/logs/aggregator.log" 2>&1 &
pids+=($!)
export SOPFLOW_ARCHIVER=127.0.0.1:$ARCHIVER_PORT
"$BIN_ARCHIVER" --listen "$SOPFLOW_ARCHIVER" --redis "127.0.0.1:$REDIS_PORT" --nats "nats://127.0.0.1:$NATS_PORT" \
  --tokens deploy/overlays/dev/tokens.yaml --blobs "$VAR/archive" --rules deploy/base/archiver \
  --router "$SOPFLOW_ROUTER" --aggregator "$SOPFLOW_AGGREGATOR" --service-token demo-archiver \
  > "$VAR/logs/archiver.log" 2>&1 &
pids+=($!)
wait_port "$ROUTER_PORT"; wait_port "$NOTIFIER_PORT"; wait_port "$AGGREGATOR_PORT"; wait_port "$ARCHIVER_PORT"
echo "router on $SOPFLOW_ROUTER, notifier on $SOPFLOW_NOTIFIER (SOP time x60), aggregator on $SOPFLOW_AGGREGATOR, archiver on $SOPFLOW_ARCHIVER"
"$BIN_WORKER" --token demo-esakip-worker > "$VAR/logs/esakip-worker.log" 2>&1 &
pids+=($!)

echo; echo "== deploying the seed SOPs (sopctl, as admin)"
"$BIN_SOPCTL" --token demo-admin deploy deploy/base/definitions/*.yaml
"$BIN_SOPCTL" --token demo-admin defs

echo; echo "== running all three seed SOPs with scripted actors; notifications as they happen"
"$BIN_SOPCTL" --token demo-admin watch --unit '*' 2> >(tee "$VAR/logs/watch.err" >&2) &
watch_pid=$!
pids+=($watch_pid)
# Subscribed once its stream's headers came (it says so): at most 10 s.
for _ in $(seq 200); do grep -q '^\[watch\] subscribed' "$VAR/logs/watch.err" 2>/dev/null && break; sleep 0.05; done
# Seed 003's staff take 3 s over step 3 ("2 menit" = 2 s at x60): its
# reminder, overdue notice and escalation to the Sekretaris fire.
status=0
"$BIN_DEMO" --tokens deploy/overlays/dev/tokens.yaml --slow-ms 3000 --reports-dir "$VAR/reports" || status=$?
sleep 0.5
kill "$watch_pid" 2>/dev/null || true

echo; echo "== e-mails the notifier sent (SMTP sink, $VAR/mail)"
mails=$(ls "$VAR/mail/new" 2>/dev/null | wc -l)
echo "$mails message(s); the first:"
first=$(ls "$VAR/mail/new" 2>/dev/null | head -1)
[ -n "$first" ] && sed -n '/^To:/p;/^Subject:/p' "$VAR/mail/new/$first" && sed -n '/^$/,$p' "$VAR/mail/new/$first" | head -12
echo; echo "== the e-SAKIP worker's log"
cat "$VAR/logs/esakip-worker.log"
echo; echo "== runs (sopctl runs)"
"$BIN_SOPCTL" --token demo-admin runs
echo; echo "== the archive (sopctl records, sopctl verify)"
for _ in $(seq 1 100); do  # each completed run is filed from its run.completed event
  [ "$("$BIN_SOPCTL" --token demo-admin records | grep -c '^BRK-')" -ge 3 ] && break
  sleep 0.05
done
"$BIN_SOPCTL" --token demo-admin records
"$BIN_SOPCTL" --token demo-admin verify || status=$?
echo; echo "== due for transfer to the inactive archive on 2029-06-01 (sopctl due)"
"$BIN_SOPCTL" --token demo-admin due --date 2029-06-01 | grep '^BRK-' || status=$?
exit $status
