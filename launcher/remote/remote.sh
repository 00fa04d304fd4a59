# kq's remote side: plain POSIX sh. kq runs the constant command
# `exec /bin/sh -s` and sends, on that session's stdin, the settings (rt:
# runtime dir, "" to ask the server; id; linger in seconds; keep 0/1;
# start_script; path; grace; conn_json; owner), this text and one line that calls
# an op_* function and exits. So no setting, no env: value and no key is
# ever on a command line, and the user's login shell (bash, zsh, csh, fish)
# only ever parses that constant command.
#
# The shell may read ahead of what it runs, so kq writes nothing more on
# stdin until it has read the op's first line; a holding op then reads
# kq's lines (ping, stop, ...) with `read`. Lines kq reads start with "KQ-".
# Every wait loop is bounded. Values are printed with printf '%s', never
# echo (which interprets backslashes in some shells).
#
# Files of one kernel, all in the runtime dir, all 0600, all removed with it:
#   kernel-kq-ID.json  connection file (written by the kernel)
#   kernel-kq-ID.log   the kernel command's output (capped)
#   kernel-kq-ID.kq    pid=..., start=... (the pid's start time), linger=...,
#                      owner=... (kq kernel: which kernel manager's kernel)
#   kernel-kq-ID.cmd   how to (re)start the kernel: sh FILE CONNECTION_FILE;
#                      it holds the profile's env: values
#   kernel-kq-ID.hold  re-created by every line a kq session sends; the
#                      watchdog removes it, so its absence for `linger`
#                      seconds means no kq is attached
#   kernel-kq-ID.keep  present: stay up without any kq (--keep, --detach)
#   kernel-kq-ID.restarting  present while `kq restart` swaps the process
#   kernel-kq-ID.starting    present until the connection file is sent; a
#                      failed start reports the death itself, and keeps it
#   kernel-kq-ID.wd    the watchdog's pid and its start time
#   kernel-kq-ID.spare present while the kernel is a spare no session has
#                      taken (warm: 1); it holds the spare's flavor (a hash
#                      of its start script). Taking a spare, and the
#                      watchdog's stopping of one that lingered, both begin
#                      by removing this file: whoever removes it decides.
#   kernel-kq-ID.sbatch and the other files job.sh lists: a kernel in a
#                      batch job (a profile with scheduler:), whose "kernel"
#                      process here is job.sh's job_login

# kq sets rt, id, linger, keep, start_script, path, grace, conn_json,
# owner, inotify, warm and flavor, start_wait (tenths of a second to wait
# for the connection file, 0: no limit), sched_cmd (op_sched's command, sh
# words) and adopt (1: a batch job kernel of this owner may be taken over)
# before this text.
# replace_owner works on other kernels' files in a subshell, so its
# assignments are local on purpose.
# shellcheck disable=SC2154,SC2030,SC2031

# The kernel gets the login umask; kq's own files are private.
login_umask=$(umask)
umask 077
say() { printf '%s\n' "$*"; }

# bounded runs a command that may hang (a runtime dir on a dead NFS
# server) under a time limit where timeout(1) exists.
bounded() {
  if command -v timeout >/dev/null 2>&1; then timeout "${bound:-15}" "$@"; else "$@"; fi
}
# default_rt is jupyter_core's runtime dir, worked out here on Linux
# without starting Python (jupyter --runtime-dir costs a Python start per
# op): JUPYTER_RUNTIME_DIR, else JUPYTER_DATA_DIR/runtime, else
# ${XDG_DATA_HOME:-~/.local/share}/jupyter/runtime. Elsewhere, or with
# JUPYTER_PLATFORM_DIRS (platformdirs decides), jupyter itself is asked.
default_rt() {
  if [ -n "${JUPYTER_RUNTIME_DIR:-}" ]; then say "$JUPYTER_RUNTIME_DIR"; return 0; fi
  if [ -n "${JUPYTER_PLATFORM_DIRS:-}" ] || [ "$(uname -s 2>/dev/null)" != Linux ]; then
    bounded jupyter --runtime-dir 2>/dev/null && return 0
  fi
  if [ -n "${JUPYTER_DATA_DIR:-}" ]; then say "$JUPYTER_DATA_DIR/runtime"; return 0; fi
  d=${XDG_DATA_HOME:-}; [ -n "$d" ] || d="$HOME/.local/share"
  say "$d/jupyter/runtime"
}
[ -n "$rt" ] || rt=$(default_rt) || rt=
[ -n "$rt" ] || rt="$HOME/.local/share/jupyter/runtime"
# set_files points every per-kernel file name at kernel ID $1.
set_files() {
  id=$1; base="$rt/kernel-kq-$id"
  f="$base.json"; log="$base.log"; meta="$base.kq"; hold="$base.hold"
  keepf="$base.keep"; cmdf="$base.cmd"; restarting="$base.restarting"; wdf="$base.wd"
  starting="$base.starting"; spare="$base.spare"
}
set_files "$id"
log_max=1048576

# check_rt refuses a runtime dir that someone else could plant files in or
# swap: it must be the user's own and writable by nobody else.
check_rt() {
  [ -d "$rt" ] || return 0
  if [ ! -O "$rt" ]; then say "KQ-ERROR runtime dir $rt is not owned by $(id -un)"; return 1; fi
  if [ -n "$(find "$rt" -prune \( -perm -0020 -o -perm -0002 \) -print 2>/dev/null)" ]; then
    say "KQ-ERROR runtime dir $rt is writable by other users"; return 1
  fi
}

# stamp prints a process's start time, which tells it apart from a later
# process that got the same pid.
stamp() {
  if proc_stat "$1"; then say "$pstart"
  else ps -o lstart= -p "$1" 2>/dev/null; fi
}
# proc_stat reads /proc/PID/stat with the shell's own read (alive runs
# every second in every session, and during a start at every event: no
# process of its own): $pstate is the process's state letter, $pstart its
# start time. It fails where /proc does not tell.
proc_stat() {
  pstate=; pstart=
  IFS= read -r pl 2>/dev/null < "/proc/$1/stat" || return 1
  pl=${pl##*) } # the command name, which may hold spaces and ")", ends at the last ") "
  oifs=$IFS; IFS=' '
  # shellcheck disable=SC2086 # split into the fields on purpose
  set -- $pl
  IFS=$oifs
  pstate=$1; pstart=${20:-}
}
# pid is the kernel's pid from its meta file, else the last one this shell
# saw ($last), so that files removed by someone else cannot make the
# watchdog lose its kernel; started is that pid's recorded start time.
last=; last_start=
# meta_get KEY sets $mv to KEY's value in the meta file ("" without one),
# read by the shell itself; meta_field prints it.
meta_get() {
  mv=
  [ -r "$meta" ] || return 0
  while IFS= read -r ml; do
    case $ml in "$1="*) mv=${ml#*=}; return 0;; esac
  done < "$meta"
}
meta_field() { meta_get "$1"; [ -z "$mv" ] || say "$mv"; }
pid() { meta_get pid; say "${mv:-$last}"; }
started() { meta_get start; say "${mv:-$last_start}"; }
# threads_left: the process has a thread besides its main one. One whose
# main thread has ended shows as a zombie while its other threads still run
# (a kernel's end), holding its sockets.
threads_left() { set -- /proc/"$1"/task/*; [ "$#" -gt 1 ]; }
# alive: the recorded pid runs, is no zombie (one not yet reaped by init is
# dead too, once no thread of it is left; /proc tells where it exists), and
# is still the process kq started (same start time), not another one that
# reused its pid.
alive() {
  meta_get pid; p=${mv:-$last}
  [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 1
  meta_get start; s=${mv:-$last_start}
  if proc_stat "$p"; then
    { [ "$pstate" != Z ] || threads_left "$p"; } && { [ -z "$s" ] || [ "$pstart" = "$s" ]; }
  else
    [ -z "$s" ] || [ "$(stamp "$p")" = "$s" ]
  fi
}
# snooze sleeps $1 seconds in a child that holds none of the session's
# output (so sshd never waits for it) and that end_snooze, called from a TERM
# trap, ends with its shell: a stopped session leaves no sleep behind.
snooze() { sleep "$1" >/dev/null 2>&1 & napper=$!; wait "$napper"; napper=; }
end_snooze() { [ -z "${napper:-}" ] || kill "$napper" 2>/dev/null; }

# waitgone waits up to $1 tenths of a second for the kernel to exit: woken
# by the exit itself where inotifywait is (the kernel's stdout and stderr,
# its log, are closed then), and every tenth of a second in any case (a
# child the kernel left may keep the log open).
waitgone() {
  alive || return 0
  j=0; iw=; tk=
  wake_on "$log" 0.1 -e close_write || iw=
  while alive && [ "$j" -lt "$1" ]; do
    if [ -z "$iw" ]; then sleep 0.1; j=$((j+1))
    elif read -r woke <&3; then [ "$woke" = t ] && j=$((j+1))
    else sleep 0.1; j=$((j+1)); fi
  done
  stop_waking
}
# The kernel runs in its own process group (setsid): signal all of it,
# and only after checking the pid is still the kernel's.
signal_kernel() {
  alive || return 0
  kill -"$1" -"$p" 2>/dev/null || kill -"$1" "$p" 2>/dev/null
}
# A job's login side needs time to cancel the job and see it cancelled.
kill_kernel() {
  w=30; [ -e "$base.sbatch" ] && w=150
  if alive; then signal_kernel TERM; waitgone "$w"; fi
  if alive; then signal_kernel KILL; waitgone 30; fi
}
cleanup() {
  rm -f "$f" "$log" "$meta" "$hold" "$keepf" "$cmdf" "$restarting" "$starting" "$meta.new" "$wdf" "$log.cap" "$spare"
  rm -f "$base.job" "$base.sched" "$base.sched.new" "$base.beat" "$base.node" "$base.npid" "$base.restart" \
    "$base.int" "$base.sbatch" "$base.kcmd" "$base.out" "$base.exited" "$base.final"
}
# finish: the kernel is stopped; end its watchdog now rather than at its
# next look, and remove the files.
finish() {
  w=; ws=; { read -r w ws < "$wdf"; } 2>/dev/null # a missing file: quiet, as the redirection fails first
  # Only the watchdog itself: its recorded start time must still match.
  [ -n "$w" ] && [ "$(stamp "$w")" = "$ws" ] && kill "$w" 2>/dev/null
  cleanup
}

# spawn starts the kernel from a subshell, so it is not our child: init
# reaps it, and kill -0 tells the truth about it. A command started in the
# background by a shell without job control ignores SIGINT and SIGQUIT,
# and a shell cannot undo that; env(1) can where it knows how
# (coreutils >= 8.31), so that an interrupt reaches kernels that do not
# install their own handler.
spawn() {
  ss=; command -v setsid >/dev/null 2>&1 && ss=setsid
  dflt=; env --default-signal=INT true 2>/dev/null && dflt="env --default-signal=INT,QUIT"
  : >> "$log"
  # shellcheck disable=SC2086 # $ss and $dflt are words to split, or none
  p=$( ( $ss $dflt sh "$cmdf" "$f" </dev/null >>"$log" 2>&1 & echo $! ) )
  { say "pid=$p"; say "start=$(stamp "$p")"; say "linger=$linger"; say "owner=$owner"; } > "$meta.new" && mv "$meta.new" "$meta"
}

# cap_log keeps the kernel's log under log_max by keeping its newest part;
# the kernel appends (O_APPEND), so it writes on at the new end.
cap_log() {
  n=$({ wc -c < "$log"; } 2>/dev/null) || return 0
  [ "${n:-0}" -gt "$log_max" ] || return 0
  tail -c $((log_max / 4)) "$log" > "$log.cap" && cat "$log.cap" > "$log"; rm -f "$log.cap"
}

# watchdog outlives every kq session: it stops the kernel once no session
# has spoken for `linger` seconds (unless kept), and removes the files once
# the kernel is gone, however it went.
watchdog() {
  idle=0
  trap 'end_snooze; exit 0' TERM # finish ends it: its snooze goes with it
  while :; do
    last=$(pid); last_start=$(started)
    snooze 2
    cap_log
    [ -e "$restarting" ] && continue
    alive || break
    if [ -e "$keepf" ]; then idle=0; continue; fi
    if [ -e "$hold" ]; then rm -f "$hold"; idle=0; else idle=$((idle+2)); fi
    if [ "$idle" -ge "$linger" ]; then
      # A spare is stopped only if this removes its marker; a session that
      # took it meanwhile created the hold file before removing the marker.
      if [ -e "$spare" ]; then rm "$spare" 2>/dev/null || { idle=0; continue; }
      elif [ -e "$hold" ]; then idle=0; continue; fi
      kill_kernel; break
    fi
  done
  cleanup
}

# hold serves one kq session: every line from kq marks the kernel as held;
# a ticker reports a kernel that died, and dies itself (SIGPIPE) when the
# session is gone. EOF on stdin ends the session, not the kernel.
hold() {
  : > "$hold"
  (
    sent=; soon=; look_iw=
    [ "$inotify" = 1 ] && command -v inotifywait >/dev/null 2>&1 && look_iw=1
    trap 'end_snooze; exit 0' TERM # end_helpers ends it: its snooze goes with it
    while :; do
      relay_sched
      # A dead kernel ends the whole session ($$ is the hold shell), even
      # one whose kq is out of reach and sends nothing more; a start that
      # failed says why itself and waits for kq's "kill".
      # A batch job's kernel that exited on the node (job.sh's .exited) is
      # dead at once: its login side is ending too, and is waited for.
      if [ ! -e "$restarting" ] && [ ! -e "$starting" ] && { [ -e "$base.exited" ] || ! alive; }; then
        xrc=$(cat "$base.exited" 2>/dev/null)
        if [ -n "$xrc" ] && [ -n "$(meta_field owner)" ] && alive; then
          # A kernel manager's kernel in a batch job: the job waits a moment
          # (job.sh's park) for the manager's next kq kernel to take it
          # over (adopt_job); its login side and watchdog go on.
          say "KQ-SCHED X|$(date +%Y-%m-%dT%H:%M:%S)|$xrc"; say KQ-DIED; kill $$ 2>/dev/null; exit 0
        fi
        # Its files go first, so that a kq that leaves at the news (kq
        # kernel) leaves nothing behind.
        waitgone 30; relay_sched
        [ -n "$xrc" ] && say "KQ-SCHED X|$(date +%Y-%m-%dT%H:%M:%S)|$xrc"
        finish; say KQ-DIED; kill $$ 2>/dev/null; exit 0
      fi
      say KQ-TICK || exit 0
      next_look
    done
  ) &
  ticker=$!
  while read -r cmd; do
    : > "$hold"
    case "$cmd" in
      stop) end_helpers; waitgone 30; kill_kernel; finish; say KQ-STOPPED; exit 0;;
      kill) end_helpers; kill_kernel; finish; say KQ-STOPPED; exit 0;;
      detach) end_helpers; : > "$keepf"; rm -f "$hold"; say KQ-DETACHED; exit 0;;
      release) end_helpers; rm -f "$hold"; say KQ-RELEASED; exit 0;;
      interrupt) signal_kernel INT; say KQ-INTERRUPTED;;
    esac
  done
  end_helpers
}

# next_look waits for the ticker's next look at the kernel: $tick_every
# seconds, or less when the kernel's log is closed, which its exit does
# (where inotifywait is; 0.1 s later a second look, for an exit still
# under way), so that a kernel that a manager's shutdown_request ended is
# reported as soon as it is gone. Each wait is an inotifywait of its own
# with a timeout, in snooze's place: it ends by itself, also when its shell
# was killed outright. One that cannot watch (exit 1) is not tried again.
next_look() {
  if [ -n "$soon" ]; then soon=; snooze 0.1; return 0; fi
  if [ -z "$look_iw" ] || [ ! -e "$log" ]; then snooze "$tick_every"; return 0; fi
  inotifywait -qq -t "$tick_every" -e close_write "$log" >/dev/null 2>&1 &
  napper=$!; wait "$napper"; rc=$?; napper=
  case $rc in 0) soon=1;; 2) ;; *) look_iw=;; esac
}
tick_every=1

# relay_sched passes a batch job's status line (job.sh) on to kq when it
# changed since the last one sent.
relay_sched() {
  [ -e "$base.sched" ] || return 0
  st=$(cat "$base.sched" 2>/dev/null)
  [ -n "$st" ] && [ "$st" != "$sent" ] && { sent=$st; say "KQ-SCHED $st"; }
  return 0
}

# end_helpers ends this session's ticker and, during a start, the wait for
# the connection file.
end_helpers() { kill "$ticker" ${extra:+"$extra"} 2>/dev/null; }

# printed_json finds a connection file that the kernel command printed
# instead of writing it where this host can see it (a kernel started on
# another machine by ssh or srun): one line {...}, or a block from a "{"
# line to a "}" line, that has a shell_port.
printed_json() {
  awk '
    /^[ \t]*\{.*\}[ \t]*$/ { if ($0 ~ /"shell_port"/) { print; found = 1; exit } next }
    /^[ \t]*\{/ { inb = 1; b = "" }
    inb { b = b $0 "\n" }
    inb && /^[ \t]*\}/ { inb = 0; if (b ~ /"shell_port"/) { printf "%s", b; found = 1; exit } }
    END { exit !found }
  ' "$log" 2>/dev/null
}

# zero_ports: the connection file kq preset still has port 0, so the
# kernel has not yet written back the ports it bound.
zero_ports() { [ -n "$conn_json" ] && grep -q '"shell_port": *0[^0-9]' "$f"; }

# json_ready: the kernel has written its connection file, or printed it
# (then it is written here).
json_ready() {
  if [ -s "$f" ] && tail -c 2 "$f" | grep -q '}' && ! zero_ports; then return 0; fi
  grep -q '"shell_port"' "$log" 2>/dev/null || return 1
  if printed_json > "$f.new"; then mv "$f.new" "$f"; return 0; fi
  rm -f "$f.new"; return 1
}

# wake_on TARGET TICK EVENTS... makes fd 3 deliver a line "x" whenever
# inotifywait sees one of EVENTS on TARGET (a file, or a dir's files), and
# "t" every TICK seconds regardless, so that a wait is woken by the change
# it waits for instead of polling (inotifywait, where the server has
# inotify-tools). It returns once the watch is established (or the first
# tick has come), so no change after it is missed. Without inotifywait it
# returns 1 and the caller polls.
# No open of the fifo blocks: this shell opens it read-write (fd 3), the
# helpers get a write-only copy (fd 4, closed here) and no read end, so
# once fd 3 is gone (this shell ended, however) their next write fails and
# the ticker ends inotifywait and itself. The name is removed at once.
wake_on() {
  [ "$inotify" = 1 ] && command -v inotifywait >/dev/null 2>&1 || return 1
  target=$1; tick=$2; shift 2
  ev=$(mktemp -u "$base.ev.XXXXXX" 2>/dev/null) && mkfifo "$ev" 2>/dev/null || return 1
  if ! ( exec 3<> "$ev" ) 2>/dev/null; then rm -f "$ev"; return 1; fi
  exec 3<> "$ev"
  exec 4> "$ev"
  rm -f "$ev"
  inotifywait -m "$@" --format x "$target" >&4 2>&4 3<&- &
  iw=$!
  ( trap '' PIPE; trap 'end_snooze; exit 0' TERM
    while snooze "$tick"; do say t 2>/dev/null || break; done; kill "$iw" 2>/dev/null ) 2>/dev/null >&4 3<&- &
  tk=$!
  exec 4>&-
  n=0
  while [ "$n" -lt 5 ] && read -r woke <&3; do
    case $woke in "Watches established"*|t) break;; esac
    n=$((n+1))
  done
}
# stop_waking ends the two helpers and waits for them to be gone, so that
# none outlives the op (kq's exit, or a test's look at the processes, may
# follow at once). Neither can hang the wait: the TERM ends inotifywait, and
# the ticker's trap (or, once fd 3 is closed, its next failed write) ends it.
stop_waking() {
  [ -z "${ev:-}" ] || rm -f "$ev"
  [ -z "${iw:-}" ] || { kill "$iw" "$tk" 2>/dev/null; exec 3<&-; wait "$iw" "$tk" 2>/dev/null; }
  return 0
}

# wait_json reports the connection file once the kernel has written it (or
# printed it), or why it never will.
wait_json() {
  i=0; iw=; tk=
  trap 'stop_waking; exit 1' TERM
  # Woken by a write, a close after writing or a rename in the runtime dir.
  wake_on "$rt" 1 -e close_write -e moved_to -e modify || iw=
  while ! json_ready; do
    if ! alive; then
      stop_waking
      if [ -e "$base.job" ]; then say "KQ-ERROR the kernel's batch job $(cat "$base.job") ended before the kernel wrote $f"
      elif [ -e "$base.sbatch" ]; then say "KQ-ERROR the scheduler refused the kernel's batch job"
      else say "KQ-ERROR kernel command exited before writing $f"; fi
      tail -n 20 "$log" | sed 's/^/KQ-LOG /'; say KQ-FAILED; exit 1
    fi
    # In tenths of a second: the ticker's lines count ten, events none.
    if [ -z "$iw" ]; then sleep 0.1; i=$((i+1))
    elif read -r woke <&3; then [ "$woke" = t ] && i=$((i+10))
    else sleep 0.1; i=$((i+1)); fi
    if [ "${start_wait:-0}" -gt 0 ] && [ $i -gt "$start_wait" ]; then
      stop_waking
      if [ -e "$base.sbatch" ]; then say "KQ-ERROR the kernel's batch job did not start within the queue timeout ($((start_wait / 10))s)"
      else say "KQ-ERROR no connection file after $((start_wait / 10))s"; fi
      say KQ-FAILED; exit 1
    fi
  done
  stop_waking
  chmod 600 "$f" # the key is private, whatever the kernel's umask
  # A batch job's node ("NODE ADDRESS", job.sh), before the file it serves.
  [ -s "$base.node" ] && say "KQ-SCHED N|$(date +%Y-%m-%dT%H:%M:%S)|$(cat "$base.node") $(cat "$base.job" 2>/dev/null)"
  rm -f "$starting"
  say KQ-JSON-BEGIN; cat "$f"; say; say KQ-JSON-END
}

# op_start writes the start script (kq has put it in $start_script) under
# the login umask, starts the kernel and its watchdog, and holds the kernel
# for this session from that moment on, however long the kernel takes to
# write its connection file.
op_start() {
  mkdir -p "$rt" || { say "KQ-ERROR cannot create runtime dir $rt"; say KQ-FAILED; exit 1; }
  check_rt || { say KQ-FAILED; exit 1; }
  if [ "$adopt" = 1 ] && [ -n "$owner" ] && [ -n "$conn_json" ] && adopt_job; then
    say "KQ-FILE $f"; last=$(pid); last_start=$(started); say "KQ-PID $last"
    wait_json &
    extra=$!
    hold; return
  fi
  if [ "$warm" = 1 ] && take_spare; then
    say "KQ-FILE $f"; say KQ-WARM
    [ "$keep" = 1 ] && : > "$keepf"
    last=$(pid); last_start=$(started)
    say "KQ-PID $last"
    { wait_json && offer_spare; } &
    extra=$!
    hold; return
  fi
  say "KQ-FILE $f"
  [ -n "$owner" ] && replace_owner
  [ -n "$conn_json" ] && say "$conn_json" > "$f"
  { say "umask $login_umask"; say "$start_script"; } > "$cmdf"
  [ "$keep" = 1 ] && : > "$keepf"
  : > "$starting"
  launch
  say "KQ-PID $last"
  { wait_json && offer_spare; } &
  extra=$!
  hold
}

# launch starts the kernel and its watchdog.
launch() {
  spawn
  last=$(pid); last_start=$(started)
  ( trap '' HUP; watchdog ) </dev/null >/dev/null 2>&1 &
  say "$! $(stamp $!)" > "$wdf"
}

# take_spare takes a spare kernel of this flavor (warm: 1) for this
# session, pointing the file names at it; it fails when there is none.
take_spare() {
  own=$id
  for s in "$rt"/kernel-kq-*.spare; do
    { [ -f "$s" ] && [ -O "$s" ] && [ "$(cat "$s" 2>/dev/null)" = "$flavor" ]; } || continue
    i=${s##*/kernel-kq-}; set_files "${i%.spare}"; last=; last_start=
    : > "$hold" # before the marker goes: the watchdog looks for one of the two
    rm "$spare" 2>/dev/null || continue # another session, or the watchdog, was first
    alive && return 0
    kill_kernel; finish # a spare that died: clean up, look on
  done
  set_files "$own"; return 1
}

# offer_spare starts, once this session's kernel is up, the spare that
# the next session of this flavor will take (unless one is there), in the
# background and detached: it is its watchdog's from then on.
offer_spare() {
  [ "$warm" = 1 ] || return 0
  ( trap '' HUP; new_spare ) </dev/null >/dev/null 2>&1 &
}

new_spare() {
  for s in "$rt"/kernel-kq-*.spare; do
    [ -f "$s" ] && [ "$(cat "$s" 2>/dev/null)" = "$flavor" ] && return 0
  done
  i=$(cat /proc/sys/kernel/random/uuid 2>/dev/null) || i=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  [ -n "$i" ] || return 0
  set_files "$i"; owner=
  { say "umask $login_umask"; say "$start_script"; } > "$cmdf"
  : > "$starting"
  launch
  say "$flavor" > "$spare"
}

# replace_owner stops every other kq kernel of this owner (the kernel
# manager that launched this one restarts its kernel: the old one must go,
# even if its kq was killed and could not stop it) and removes its files.
replace_owner() (
  for m in "$rt"/kernel-kq-*.kq; do
    { [ -f "$m" ] && [ -O "$m" ] && [ "$m" != "$meta" ]; } || continue
    [ "$(sed -n 's/^owner=//p' "$m")" = "$owner" ] || continue
    i=${m##*/kernel-kq-}; set_files "${i%.kq}"; last=; last_start=
    kill_kernel; finish
  done
)

# adopt_job takes over a batch job kernel of this owner whose login side
# still runs (its kernel manager restarts the kernel: the old kq kernel
# exited or was killed): the job's node side starts a fresh kernel on the
# manager's new preset file, in the same allocation, and this session
# holds it under the old kernel's id.
adopt_job() {
  for m in "$rt"/kernel-kq-*.kq; do
    { [ -f "$m" ] && [ -O "$m" ] && [ "$m" != "$meta" ]; } || continue
    [ "$(sed -n 's/^owner=//p' "$m")" = "$owner" ] || continue
    { [ -e "${m%.kq}.sbatch" ] && [ -e "${m%.kq}.job" ]; } || continue
    ( meta=$m; last=; last_start=; alive ) || continue
    i=${m##*/kernel-kq-}; set_files "${i%.kq}"; last=; last_start=
    : > "$starting"
    rm -f "$base.exited" "$base.sched"
    say "$conn_json" > "$f"
    : > "$base.restart"
    say "KQ-SCHED R|$(date +%Y-%m-%dT%H:%M:%S)|$(cat "$base.job")"
    return 0
  done
  return 1
}

# op_attach holds a running kq kernel for a new session (a reconnect, or
# kq attach), after sending its connection file; after it, $1 (op_claimed:
# offer_spare) runs before the hold.
op_attach() {
  check_rt || exit 1
  if [ ! -e "$meta" ] || ! alive; then say KQ-GONE; exit 0; fi
  say "KQ-FILE $f"; say "KQ-PID $(pid)"
  say KQ-JSON-BEGIN; cat "$f"; say; say KQ-JSON-END
  extra=
  ${1:-:}
  hold
}

# op_claimed holds a spare that kq took in the kernel itself (warm: 1; its
# own request created the hold file and removed the marker), like
# op_attach, and starts the spare behind it.
op_claimed() { op_attach offer_spare; }

# op_spare reports a spare of this flavor once it is up (its connection
# file complete), for kq to remember for the next session's claim. It
# waits for one at most start_wait tenths of a second, and no longer than
# kq does: kq closing stdin (EOF) ends it at once.
op_spare() {
  check_rt || exit 1
  find_spare &
  finder=$!
  read -r _ || :
  kill "$finder" 2>/dev/null
}
find_spare() {
  j=0; iw=; tk=
  trap 'stop_waking; exit 0' TERM # op_spare ends it: its helpers go with it
  # Woken by the spare's files as they are written, as wait_json is.
  wake_on "$rt" 1 -e close_write -e moved_to -e modify || iw=
  while [ "$j" -le "${start_wait:-0}" ]; do
    for s in "$rt"/kernel-kq-*.spare; do
      { [ -f "$s" ] && [ -O "$s" ] && [ "$(cat "$s" 2>/dev/null)" = "$flavor" ]; } || continue
      i=${s##*/kernel-kq-}; set_files "${i%.spare}"; conn_json=; last=; last_start=
      { [ -s "$f" ] && tail -c 2 "$f" | grep -q '}' && ! zero_ports && alive; } || continue
      stop_waking; say "KQ-FILE $f"; say KQ-JSON-BEGIN; cat "$f"; say; say KQ-JSON-END; say KQ-DONE; return 0
    done
    # In tenths of a second: the ticker's lines count ten, events none.
    if [ -z "$iw" ]; then sleep 0.5 >/dev/null 2>&1; j=$((j+5))
    elif read -r woke <&3; then [ "$woke" = t ] && j=$((j+10))
    else sleep 0.5 >/dev/null 2>&1; j=$((j+5)); fi
  done
  stop_waking; say KQ-GONE
}

# op_stop stops a kq kernel, after `grace` tenths of a second for a
# shutdown_request to take effect, and removes its files.
op_stop() {
  check_rt || exit 1
  [ -e "$meta" ] || { say KQ-GONE; exit 0; }
  waitgone "${grace:-0}"; kill_kernel; finish; say KQ-STOPPED
}

op_interrupt() {
  check_rt || exit 1
  if [ ! -e "$meta" ] || ! alive; then say KQ-GONE; exit 0; fi
  kill -INT "$p" && say KQ-DONE
}

# op_restart replaces the kernel process; it reads the same connection
# file, so key and ports stay, and open sessions keep working. A kernel in
# a batch job is restarted by the job's node side, in the same allocation.
op_restart() {
  check_rt || exit 1
  if [ ! -e "$meta" ] || ! alive; then say KQ-GONE; exit 0; fi
  if [ -e "$base.sbatch" ]; then restart_job; exit 0; fi
  : > "$restarting"
  kill_kernel
  spawn
  rm -f "$restarting"
  say "KQ-PID $(pid)"
}

# op_final marks a batch job kernel's end as final (job.sh's .final): its
# kernel manager shut it down for good, so its job does not wait for a
# restart once the kernel is gone.
op_final() {
  check_rt || exit 1
  [ -e "$meta" ] || { say KQ-GONE; exit 0; }
  : > "$base.final"; say KQ-DONE
}

# restart_job asks the node side for a new kernel and waits (bounded) for
# it to say it started one.
restart_job() {
  old=$(cat "$base.npid" 2>/dev/null); : > "$base.restart"; i=0
  while [ -e "$base.restart" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
  new=$(cat "$base.npid" 2>/dev/null)
  if [ -e "$base.restart" ] || [ -z "$new" ] || [ "$new" = "$old" ]; then
    rm -f "$base.restart"; say "KQ-ERROR the job's node side did not restart the kernel"; exit 1
  fi
  say "KQ-PID $new"
}

# op_sched runs one scheduler command ($sched_cmd; $path is its program)
# and prints its output and exit status.
op_sched() {
  command -v "$path" >/dev/null 2>&1 || { say "KQ-ERROR $path not found on $(hostname)"; exit 0; }
  out=$(eval "$sched_cmd" 2>&1); rc=$?
  say KQ-JSON-BEGIN; say "$out"; say KQ-JSON-END; say "KQ-EXIT $rc"; say KQ-DONE
}

# op_list prints every connection file in the runtime dir that the user
# owns, kq's or not.
op_list() {
  check_rt || exit 1
  now=$(date +%s)
  for j in "$rt"/kernel-*.json; do
    { [ -f "$j" ] && [ -O "$j" ]; } || continue
    b=${j%.json}; kqk=no; st=-; held=no; kept=no; lp=-; sp=no
    if [ -e "$b.kq" ]; then
      kqk=yes
      # alive() reads the kernel's own meta file; point it there.
      meta="$b.kq"; id=${b##*/kernel-kq-}; last=; last_start=
      lp=$(pid); if alive; then st=alive; else st=dead; fi
    fi
    [ -e "$b.hold" ] && held=yes
    [ -e "$b.keep" ] && kept=yes
    [ -e "$b.spare" ] && sp=yes
    mt=$(date -r "$j" +%s 2>/dev/null || stat -c %Y "$j" 2>/dev/null || say "$now")
    say "KQ-ENTRY $j|$((now-mt))|$kqk|${lp:--}|$st|$held|$kept|$sp"
    say KQ-JSON-BEGIN; cat "$j"; say; say KQ-JSON-END
  done
  say KQ-END
}

# op_cat prints one connection file given by path.
op_cat() {
  [ -f "$path" ] || { say "KQ-ERROR no such file: $path"; exit 1; }
  [ -O "$path" ] || { say "KQ-ERROR $path is not owned by $(id -un)"; exit 1; }
  say "KQ-FILE $path"; say KQ-JSON-BEGIN; cat "$path"; say; say KQ-JSON-END
}

op_rm() { [ ! -e "$path" ] || [ -O "$path" ] || { say "KQ-ERROR $path is not owned by $(id -un)"; exit 1; }; rm -f "$path"; say KQ-DONE; }

# op_kernelspecs prints the server's kernelspecs as `jupyter kernelspec
# list --json` prints them, for kq kernelspec install (the language and
# logos of the remote kernel). It asks $path (the interpreter of the
# profile's kernel command, if any) first, then `jupyter`, then python3;
# each bounded, so a broken Python cannot hang an install.
op_kernelspecs() {
  for try in ${path:+"$path -m jupyter_client.kernelspecapp"} "jupyter kernelspec" "python3 -m jupyter_client.kernelspecapp"; do
    # shellcheck disable=SC2086 # $try is a command and its words
    if out=$(bounded $try list --json 2>/dev/null) && [ -n "$out" ]; then
      say KQ-JSON-BEGIN; say "$out"; say KQ-JSON-END; say KQ-DONE; exit 0
    fi
  done
  say "KQ-ERROR no Jupyter kernelspecs on the server (tried ${path:+$path, }jupyter, python3)"
}

# op_logos prints the logos of the kernelspec in directory $path (each at
# most 256 KiB) as one JSON object of base64 strings.
op_logos() {
  say KQ-JSON-BEGIN; printf '{'; sep=
  if command -v base64 >/dev/null 2>&1; then
    for n in logo-32x32.png logo-64x64.png; do
      l="$path/$n"; [ -f "$l" ] || continue
      sz=$(wc -c < "$l" | tr -d ' '); [ "${sz:-0}" -le 262144 ] || continue
      printf '%s"%s":"%s"' "$sep" "$n" "$(base64 < "$l" | tr -d '\n')"; sep=,
    done
  fi
  say '}'; say KQ-JSON-END; say KQ-DONE
}

# op_probe runs $start_script, kq doctor's Python probe (the kernel
# command's interpreter, in the profile's workdir with its env:, as the
# kernel would run), with sh on its stdin, so no env: value is on a command
# line. Its answer, the line "kq-probe: {json}", is sent as a JSON block;
# the rest of what it printed as KQ-LOG lines.
op_probe() {
  bound=40
  out=$(say "$start_script" | bounded /bin/sh -s 2>&1); rc=$?
  ans=$(say "$out" | sed -n 's/^kq-probe: //p' | tail -n 1)
  say "$out" | grep -v -e '^kq-probe: ' -e '^$' | tail -n 20 | sed 's/^/KQ-LOG /'
  if [ -n "$ans" ]; then say KQ-JSON-BEGIN; say "$ans"; say KQ-JSON-END; say KQ-DONE; exit 0; fi
  say "KQ-ERROR the interpreter exited with status $rc before answering"; say KQ-FAILED
}

# op_rtcheck says whether kernels can go in the runtime dir, leaving
# nothing behind: it exists, passes check_rt and takes a new file
# ("KQ-DIR exists"), or it can be created: its nearest existing parent
# is a directory that takes a new file ("KQ-DIR missing PARENT").
op_rtcheck() {
  say "KQ-FILE $rt"
  if [ -d "$rt" ]; then
    check_rt || { say KQ-FAILED; exit 0; }
    writable "$rt" || { say "KQ-ERROR runtime dir $rt is not writable by $(id -un)"; say KQ-FAILED; exit 0; }
    say "KQ-DIR exists"; say KQ-DONE; exit 0
  fi
  if [ -e "$rt" ]; then say "KQ-ERROR runtime dir $rt is not a directory"; say KQ-FAILED; exit 0; fi
  up=$(dirname "$rt")
  while [ ! -e "$up" ]; do up=$(dirname "$up"); done
  if [ ! -d "$up" ] || ! writable "$up"; then
    say "KQ-ERROR cannot create runtime dir $rt: $up is not a directory $(id -un) can write to"; say KQ-FAILED; exit 0
  fi
  say "KQ-DIR missing $up"; say KQ-DONE
}

# writable: a new file can be made in directory $1 (it is removed again).
# The test is a real write: -w says yes to root even where nothing can be
# written (an immutable directory, a read-only mount).
writable() {
  t="$1/.kq-doctor-$$"
  (set -C; : > "$t") 2>/dev/null || return 1
  rm -f "$t"
}
