# kq's side of a kernel that runs in a batch job (a profile with
# scheduler:). Plain POSIX sh, in two roles, each sent inside a file that
# remote.sh's op_start writes, never on a command line:
#
#   job_login   the kernel process op_start spawns on the login node (its
#               kernel-kq-ID.cmd): it submits the batch job, watches it,
#               relays its state and cancels it when it is stopped (TERM,
#               HUP: remote.sh's hold, watchdog and op_stop stop it as they
#               stop a kernel). INT asks the node side to interrupt.
#   job_node    the batch script's body on the compute node: it starts the
#               kernel as its child bound to the node's address, restarts
#               it in the same allocation on request, and stops it when the
#               login side's heartbeat goes stale.
#
# The two talk through files next to the connection file, in the runtime
# dir, which must be on a file system the login and compute nodes share:
#   kernel-kq-ID.job    the job id
#   kernel-kq-ID.sched  the job's last status line: KIND|CLUSTER-TIME|TEXT,
#                       KIND Q (the queue's line), A (accounting's), E (an
#                       error from the scheduler's commands), S (submitted),
#                       X (the kernel's exit status: the job ends with it)
#   kernel-kq-ID.beat   touched by job_login at every look; its age is the
#                       node side's sign that no login side is left
#   kernel-kq-ID.node   "NODE ADDRESS" once the job runs
#   kernel-kq-ID.npid   the kernel's pid on the node
#   kernel-kq-ID.restart, .int   requests to the node side
#   kernel-kq-ID.final  the kernel manager shut the kernel down for good
#                       (remote.sh's op_final): the job is not parked
#   kernel-kq-ID.exited the kernel's exit status, once the node side ends
#   kernel-kq-ID.sbatch, .kcmd   the batch script, the kernel's start script
#   kernel-kq-ID.out    the job's output
#
# kq sets, before this text: id; job_batch (the batch script), job_kernel
# (the kernel's start script, $KQ_NODE_ADDR its address), the scheduler's
# commands as sh words with "$job" for the id (q_submit, q_query, q_acct,
# q_lookup, q_cancel), q_live (its live states), q_node (a snippet printing
# "NODE ADDRESS"), stale (heartbeat staleness, seconds) and park (seconds a
# kernel manager's job waits, its kernel gone, for the manager's restart:
# kq kernel; 0 for a session's).
# shellcheck disable=SC2154

jsay() { printf '%s\n' "$*"; }
jbase() { jobf="$base.job"; statf="$base.sched"; beatf="$base.beat"; nodef="$base.node"; npidf="$base.npid"; }

# status records the job's last status line for kq (remote.sh's hold relays
# it) when it changed.
status() {
  line="$1|$(date +%Y-%m-%dT%H:%M:%S)|$2"
  [ "$1|$2" = "$last_status" ] && return 0
  last_status="$1|$2"
  printf '%s\n' "$line" > "$statf.new" && mv "$statf.new" "$statf"
}

# live: the state word is one of the scheduler's states of a job not over.
live() {
  for s in $q_live; do [ "$1" = "$s" ] && return 0; done
  return 1
}

# look asks the queue about the job and sets $state. A failed query is never
# "job gone": it is retried, and a queue that no longer knows the job is
# asked of accounting. Returns 1 when nothing could be learned this time.
look() {
  if out=$(eval "$q_query" 2>&1) && [ -n "$out" ]; then
    out=$(printf '%s\n' "$out" | head -n 1); state=${out%%|*}; status Q "$out"; fails=0; return 0
  fi
  fails=$((fails+1))
  [ "$fails" -ge 3 ] || return 1
  if acct=$(eval "$q_acct" 2>/dev/null) && [ -n "$acct" ]; then
    acct=$(printf '%s\n' "$acct" | head -n 1); state=${acct%%|*}; state=${state%% *}; status A "$acct"; return 0
  fi
  status E "$(printf '%s' "$out" | tr '\n' ' ')"
  # Unknown to the queue and to accounting (none configured) after
  # retries: the job is over, with no more to say.
  case "$out" in *"nvalid job id"*|"") [ "$fails" -ge 5 ] && { state=GONE; return 0; } ;; esac
  return 1
}

# nap sleeps $1 seconds in short steps in the background, so a signal's
# trap runs at once, and ends early once the node side says the kernel
# exited.
nap() {
  n=0
  while [ "$n" -lt $(($1 * 5)) ] && [ ! -e "$base.exited" ]; do
    sleep 0.2 & napper=$!; wait "$napper" 2>/dev/null; napper=; n=$((n+1))
  done
}

# cancel cancels the job and waits (bounded) until the queue confirms it
# is over, so kq's "cancelled" is true when it says it.
cancel() {
  [ -n "$napper" ] && kill "$napper" 2>/dev/null
  # Stopped during the submit: a job of this name may exist all the same.
  [ -n "$job" ] || job=$(lookup)
  [ -n "$job" ] || exit "$1"
  eval "$q_cancel" >/dev/null 2>&1
  j=0
  while [ "$j" -lt 20 ]; do
    if out=$(eval "$q_query" 2>/dev/null); then
      st=${out%%|*}; [ -z "$out" ] && break
      live "$st" || { status Q "$(printf '%s\n' "$out" | head -n 1)"; break; }
    fi
    sleep 0.5; j=$((j+1))
  done
  exit "$1"
}

# lookup prints the id of a live job with this kernel's name, if any.
lookup() {
  eval "$q_lookup" 2>/dev/null | while IFS='|' read -r st _ _ _ _ jid _; do live "$st" && { jsay "$jid"; break; }; done
}

# submit adopts a job of this kernel's name if there is one (a wrapper
# started again, an earlier reply lost), else submits; a reply lost on
# the way is looked up by name before anything is submitted again.
submit() {
  job=$(lookup)
  if [ -z "$job" ]; then
    out=$(eval "$q_submit" 2>&1); rc=$?
    job=$(printf '%s\n' "$out" | sed -n 's/^\([0-9][0-9_]*\)\(;.*\)\{0,1\}$/\1/p' | head -n 1)
    [ -n "$job" ] || job=$(lookup)
    if [ -z "$job" ]; then
      jsay "kq: the job was not submitted (exit $rc):"; printf '%s\n' "$out"; exit 1
    fi
  fi
  printf '%s\n' "$job" > "$jobf"
  status S "$job"
}

# job_login is the login side; $1 is the connection file.
job_login() {
  f=$1; base=${f%.json}; jbase; job=; napper=; fails=0; last_status=
  trap 'cancel 143' TERM; trap 'cancel 129' HUP; trap ': > "$base.int"' INT
  : > "$beatf"
  printf '%s\n' "$job_batch" > "$base.sbatch"
  printf '%s\n' "$job_kernel" > "$base.kcmd"
  cd "${f%/*}" || exit 1
  submit
  d=1
  while :; do
    : > "$beatf"
    if [ -e "$base.exited" ]; then
      # The kernel is over and the job ends with it (remote.sh's hold says
      # so to kq), unless a kernel manager's next kq kernel takes the job
      # over while it is parked.
      status X "$(cat "$base.exited")"
      if parked; then last_status=; continue; fi
      state="over: the kernel exited ($(cat "$base.exited"))"; break
    fi
    if look; then
      live "$state" || break
      case "$state" in PENDING|REQUEUED) d=$((d < 5 ? d+1 : 5));; *) d=2;; esac
    fi
    nap "$d"
  done
  jsay "kq: job $job ended: $state"
  [ -s "$base.out" ] && tail -n 20 "$base.out"
  exit 0
}

# parked waits, while the node side keeps the allocation (park seconds),
# for remote.sh's adopt_job to take the job over (it removes .exited);
# a job nobody took is cancelled. A final end (.final) is not parked: the
# node side ends the job with the kernel.
parked() {
  [ "${park:-0}" -gt 0 ] || return 1
  j=0
  while [ -e "$base.exited" ] && [ ! -e "$base.final" ] && [ "$j" -lt $(((park + 5) * 5)) ]; do
    : > "$beatf"; sleep 0.2 & napper=$!; wait "$napper" 2>/dev/null; napper=; j=$((j+1))
  done
  [ -e "$base.exited" ] || return 0
  [ -e "$base.final" ] || eval "$q_cancel" >/dev/null 2>&1
  return 1
}

# beat_age is the heartbeat's age in seconds (huge when it is gone).
beat_age() {
  m=$(date -r "$beatf" +%s 2>/dev/null || stat -c %Y "$beatf" 2>/dev/null) || { jsay 999999; return; }
  jsay $(( $(date +%s) - m ))
}
# kalive: the kernel runs (a child that exited is a zombie until waited for).
kalive() {
  [ -n "$kpid" ] && kill -0 "$kpid" 2>/dev/null || return 1
  ! { [ -r "/proc/$kpid/stat" ] && sed 's/.*) //' "/proc/$kpid/stat" 2>/dev/null | cut -c1 | grep -q Z; }
}
kstop() {
  kalive || return 0
  kill -TERM -"$kpid" 2>/dev/null || kill -TERM "$kpid" 2>/dev/null
  j=0; while kalive && [ "$j" -lt 50 ]; do sleep 0.1; j=$((j+1)); done
  kalive && { kill -KILL -"$kpid" 2>/dev/null || kill -KILL "$kpid" 2>/dev/null; }
  wait "$kpid" 2>/dev/null
}
# kstart starts the kernel as this shell's child in a session of its own
# (setsid does not fork: a background child leads no group), bound to the
# node's address.
kstart() {
  # A connection file kq preset (kq kernel: the manager's key, ports 0)
  # names the address the kernel binds, and the kernel takes the file's
  # over --ip: it is the node's.
  if [ -s "$f" ]; then
    sed 's/"ip": *"[^"]*"/"ip": "'"$addr"'"/' "$f" > "$f.ip" && mv "$f.ip" "$f"
  fi
  ss=; command -v setsid >/dev/null 2>&1 && ss=setsid
  dflt=; env --default-signal=INT true 2>/dev/null && dflt="env --default-signal=INT,QUIT"
  # shellcheck disable=SC2086 # words to split, or none
  KQ_NODE_ADDR=$addr $ss $dflt sh "$base.kcmd" "$f" </dev/null &
  kpid=$!
  printf '%s\n' "$kpid" > "$npidf"
}

# job_node is the batch script's body; the job starts in the runtime dir.
job_node() {
  umask 077
  base="$PWD/kernel-kq-$id"; f="$base.json"; jbase; kpid=
  trap 'jsay "kq: the job nears its time limit"' USR1
  trap 'kstop; node_end 143' TERM HUP
  if [ "$(beat_age)" -gt "$stale" ]; then jsay "kq: no kq is waiting for this job any more"; exit 0; fi
  # shellcheck disable=SC2046 # NODE and ADDRESS
  set -- $(eval "$q_node")
  node=$1; addr=$2
  case "$addr" in
    *[!0-9.:]*|"") a=$(getent hosts "${addr:-$node}" 2>/dev/null | awk '{ print $1; exit }'); addr=${a:-$addr};;
  esac
  [ -n "$addr" ] || { jsay "kq: cannot tell this node's address ($node)"; exit 1; }
  printf '%s %s\n' "$node" "$addr" > "$nodef"
  cd "$HOME" 2>/dev/null || cd /
  kstart
  n=0
  while :; do
    if [ -e "$base.restart" ]; then kstop; kstart; rm -f "$base.restart"; fi
    if [ -e "$base.int" ]; then rm -f "$base.int"; kill -INT -"$kpid" 2>/dev/null || kill -INT "$kpid" 2>/dev/null; fi
    if ! kalive; then
      # The kernel's status is the job's: a kernel that failed fails the
      # job; a kernel manager's kernel may be restarted in it first.
      wait "$kpid" 2>/dev/null
      rc=$?
      [ -e "$beatf" ] && jsay "$rc" > "$base.exited"
      park_wait && continue
      node_end "$rc"
    fi
    n=$((n+1))
    if [ $((n % 25)) = 0 ] && [ "$(beat_age)" -gt "$stale" ]; then
      jsay "kq: the login side's heartbeat is stale; stopping the kernel"; kstop
      rm -f "$base".*; exit 143 # nobody is left to remove the kernel's files
    fi
    sleep 0.2
  done
}

# node_end ends the job with the kernel's status; the login side learns
# it from .exited, or, gone already (its files removed), is not sent
# anything that would stay behind.
node_end() {
  if [ -e "$beatf" ]; then jsay "$1" > "$base.exited"; else rm -f "$f" "$nodef" "$npidf" "$base.exited"; fi
  exit "$1"
}

# park_wait keeps the allocation of a kernel manager's kernel (park
# seconds) for the manager's next kq kernel to restart it here (.restart),
# unless the manager shut the kernel down for good (.final).
park_wait() {
  [ "${park:-0}" -gt 0 ] || return 1
  j=0
  while [ "$j" -lt $((park * 5)) ] && [ ! -e "$base.final" ]; do
    [ -e "$base.restart" ] && return 0
    sleep 0.2; j=$((j+1))
  done
  return 1
}
