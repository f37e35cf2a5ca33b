#!/usr/bin/env bash
# Sourced by the scripts: installs PostgreSQL/RabbitMQ when missing and starts private, loopback-only
# servers for one run. Both refuse or switch users when run as root, so directories belong to them.
# After `start_servers DIR`, PG_URL (libpq/Npgsql), AMQP_URL and RABBIT_NODE are set; stop_servers ends them.

as_user() { local user=$1; shift; if [ "$(id -u)" = 0 ]; then runuser -u "$user" -- "$@"; else "$@"; fi; }

free_port() {
  local p
  while :; do
    p=$(( (RANDOM << 1 | RANDOM & 1) % 30000 + 20000 ))
    (echo >"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
}

# ensure_installed [postgres] [rabbitmq]: both when no argument is given.
ensure_installed() {
  local want=("$@"); [ ${#want[@]} -eq 0 ] && want=(postgres rabbitmq)
  if ! command -v initdb >/dev/null 2>&1; then
    for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && PATH="$d:$PATH"; done
  fi
  local missing=()
  [[ " ${want[*]} " == *" postgres "* ]] && ! command -v initdb >/dev/null 2>&1 && missing+=(postgresql)
  [[ " ${want[*]} " == *" rabbitmq "* ]] && ! command -v rabbitmq-server >/dev/null 2>&1 && missing+=(rabbitmq-server)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} (apt)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && PATH="$d:$PATH"; done
  fi
  export PATH
}

# start_postgres DIR [fsync]: a cluster in DIR/pg; data is kept if DIR/pg already holds one.
# PG_EXTRA_OPTS adds server options (e.g. "-c shared_preload_libraries=pg_stat_statements" to profile).
start_postgres() {
  local dir=$1 fsync=${2:-on} port
  mkdir -p "$dir/pg"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir" "$dir/pg"
  if [ ! -f "$dir/pg/PG_VERSION" ]; then
    as_user postgres initdb -D "$dir/pg" -A trust -U postgres -E UTF8 --no-sync >/dev/null
  fi
  # A port can be taken between the check and the bind: try another, and show the server's own words if all fail.
  local attempt
  for attempt in 1 2 3; do
    port=$(free_port)
    as_user postgres pg_ctl -D "$dir/pg" -l "$dir/pg.log" \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=$fsync -c max_connections=400 ${PG_EXTRA_OPTS:-}" -w start >/dev/null && break
    echo "PostgreSQL did not start on port $port (attempt $attempt):" >&2
    tail -n 5 "$dir/pg.log" >&2
    [ "$attempt" = 3 ] && return 1
    sleep 1
  done
  PG_PORT=$port
  PG_URL="Host=127.0.0.1;Port=$port;Username=postgres;Database=postgres"
}

# start_rabbitmq DIR [NODE]: a broker with its data in DIR/rabbit; a fixed NODE name keeps its queues between runs.
start_rabbitmq() {
  local dir=$1/rabbit port dist attempt
  mkdir -p "$dir/mnesia" "$dir/log"
  echo '[].' >"$dir/enabled_plugins"
  [ "$(id -u)" = 0 ] && chown -R rabbitmq:rabbitmq "$dir"
  # As with PostgreSQL, a port can be taken between the check and the bind (the broker then stops itself):
  # try other ports, and show the broker's log if all attempts fail.
  for attempt in 1 2 3; do
    port=$(free_port); dist=$(free_port)
    RABBIT_NODE=${2:-"vr$$x$RANDOM@localhost"}
    RABBITMQ_NODENAME=$RABBIT_NODE RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$port \
    RABBITMQ_DIST_PORT=$dist RABBITMQ_MNESIA_BASE=$dir/mnesia RABBITMQ_LOG_BASE=$dir/log \
    RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins ERL_EPMD_ADDRESS=127.0.0.1 \
      rabbitmq-server -detached >/dev/null 2>&1
    # rabbitmqctl await_startup returns early: the AMQP port answering is what counts.
    for _ in $(seq 1 300); do
      (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && { AMQP_URL="amqp://guest:guest@127.0.0.1:$port/"; return 0; }
      sleep 0.2
    done
    echo "RabbitMQ did not start on port $port (attempt $attempt); its log:" >&2
    tail -n 30 "$dir"/log/*.log >&2 || true
    rabbitmqctl -n "$RABBIT_NODE" stop >/dev/null 2>&1 || true
  done
  return 1
}

# Each step goes on failing or not: in an EXIT trap under `set -e`, a broker that never came up made rabbitmqctl fail
# and the trap end there, leaving PostgreSQL running.
stop_servers() {
  local dir=$1
  if [ -n "${RABBIT_NODE:-}" ]; then rabbitmqctl -n "$RABBIT_NODE" stop >/dev/null 2>&1 || true; fi
  if [ -f "$dir/pg/postmaster.pid" ]; then as_user postgres pg_ctl -D "$dir/pg" -m fast -w stop >/dev/null 2>&1 || true; fi
  return 0
}
