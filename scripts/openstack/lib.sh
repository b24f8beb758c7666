# shellcheck shell=bash
# Process helpers shared by scripts/openstack-up.sh and openstack-down.sh.
# Every service runs in its own session (setsid); its PID is recorded in
# $STATE/run/NAME.pid and nothing is ever found or killed by name.

log() { printf '[openstack %3ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
die() { printf 'openstack-up: %s\n' "$*" >&2; exit 1; }

# alive NAME: the recorded process of NAME still runs.
alive() { local f=$STATE/run/$1.pid; [[ -f $f ]] && kill -0 "$(cat "$f")" 2>/dev/null; }

# launch NAME CMD...: start CMD detached unless NAME already runs.
launch() {
  local name=$1; shift
  if alive "$name"; then return 0; fi
  setsid "$@" >>"$STATE/log/$name.out" 2>&1 </dev/null &
  echo $! >"$STATE/run/$name.pid"
  log "started $name (pid $!)"
}

# stop NAME: stop the recorded process of NAME and its descendants (TERM,
# then KILL after 12 s) and forget its PID; nothing else is touched.
stop() {
  local f=$STATE/run/$1.pid pids p left i
  alive "$1" || { rm -f "$f"; return 0; }
  p=$(cat "$f")
  pids=($(descendants "$p") "$p")
  kill -TERM "${pids[@]}" 2>/dev/null
  for ((i = 0; i < 24; i++)); do
    left=(); for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && left+=("$p"); done
    (( ${#left[@]} )) || break
    sleep 0.5
  done
  (( ${#left[@]} )) && kill -KILL "${left[@]}" 2>/dev/null
  rm -f "$f"
  log "stopped $1"
}

# died NAME LOGFILE: report a service that exited, with the end of its log.
died() { echo "openstack-up: $1 exited; last lines of $2:" >&2; tail -25 "$2" >&2; exit 1; }

# until_ok SECONDS NAME LOG CMD...: retry CMD every second until it succeeds,
# failing early when service NAME has died.
until_ok() {
  local secs=$1 name=$2 logf=$3 i; shift 3
  for ((i = 0; i < secs; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    [[ -z $name ]] || alive "$name" || died "$name" "$logf"
    sleep 1
  done
  die "timed out after ${secs}s waiting for: $*"
}

# answers URL: the port answers HTTP (any status).
answers() { curl -s -o /dev/null -m 3 "$1"; }

# wsgi NAME PORT FILE [uwsgi args]: a WSGI app under uwsgi on loopback.
# "Connection: close" because uwsgi's http-socket has no keep-alive, and
# clients that reuse the socket get "connection reset" on the next POST.
wsgi() {
  local name=$1 port=$2 file=$3; shift 3
  launch "$name" uwsgi --plugins python3 --master --die-on-term --need-app \
    --http-socket "$HOST:$port" --wsgi-file "$file" --processes 2 --threads 1 \
    --buffer-size 65535 --enable-threads --lazy-apps --add-header "Connection: close" "$@"
}

# descendants PID: every descendant of PID, deepest first.
descendants() {
  local c
  for c in $(ps -e -o pid=,ppid= | awk -v p="$1" '$2 == p {print $1}'); do
    descendants "$c"; echo "$c"
  done
}
