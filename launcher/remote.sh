# kq's remote side: plain POSIX sh, sent with every remote command. kq sets
# rt (runtime dir, "" to ask the server), id, linger (seconds) and keep (0/1)
# before this text and calls one op_* function after it. Lines kq reads
# start with "KQ-". Every wait loop is bounded.
#
# Files of one kernel, all in the runtime dir, all removed with it:
#   kernel-kq-ID.json  connection file (written by the kernel)
#   kernel-kq-ID.log   the kernel command's output
#   kernel-kq-ID.kq    pid=..., linger=... of the kernel
#   kernel-kq-ID.cmd   how to (re)start the kernel: sh FILE CONNECTION_FILE
#   kernel-kq-ID.hold  re-created by every line a kq session sends; the
#                      watchdog removes it, so its absence for `linger`
#                      seconds means no kq is attached
#   kernel-kq-ID.keep  present: stay up without any kq (--keep, --detach)
#   kernel-kq-ID.restarting  present while `kq restart` swaps the process
#   kernel-kq-ID.wd    the watchdog's pid
umask 077
[ -n "$rt" ] || rt=$(jupyter --runtime-dir 2>/dev/null) || rt=
[ -n "$rt" ] || rt="$HOME/.local/share/jupyter/runtime"
base="$rt/kernel-kq-$id"
f="$base.json"; log="$base.log"; meta="$base.kq"; hold="$base.hold"
keepf="$base.keep"; cmdf="$base.cmd"; restarting="$base.restarting"; wdf="$base.wd"

# pid is the kernel's pid from its meta file, else the last one this shell
# saw ($last), so that files removed by someone else cannot make the
# watchdog lose its kernel.
last=
pid() { v=$(sed -n 's/^pid=//p' "$meta" 2>/dev/null); echo "${v:-$last}"; }
# A zombie (not yet reaped by init) is dead too; /proc tells where it exists.
zombie() { [ -r "/proc/$1/stat" ] && sed 's/.*) //' "/proc/$1/stat" | cut -c1 | grep -q Z; }
alive() { p=$(pid); [ -n "$p" ] && kill -0 "$p" 2>/dev/null && ! zombie "$p"; }
waitgone() { j=0; while alive && [ "$j" -lt "$1" ]; do sleep 0.1; j=$((j+1)); done; }
# The kernel runs in its own process group (setsid): signal all of it.
signal_kernel() { p=$(pid); [ -n "$p" ] && { kill -"$1" -"$p" 2>/dev/null || kill -"$1" "$p" 2>/dev/null; }; }
kill_kernel() {
  if alive; then signal_kernel TERM; waitgone 30; fi
  if alive; then signal_kernel KILL; waitgone 30; fi
}
cleanup() { rm -f "$f" "$log" "$meta" "$hold" "$keepf" "$cmdf" "$restarting" "$meta.new" "$wdf"; }
# finish: the kernel is stopped; end its watchdog now rather than at its
# next look, and remove the files.
finish() { w=$(cat "$wdf" 2>/dev/null); [ -n "$w" ] && kill "$w" 2>/dev/null; cleanup; }

# spawn starts the kernel from a subshell, so it is not our child: init
# reaps it, and kill -0 tells the truth about it.
spawn() {
  ss=; command -v setsid >/dev/null 2>&1 && ss=setsid
  p=$( ( $ss sh "$cmdf" "$f" </dev/null >>"$log" 2>&1 & echo $! ) )
  { echo "pid=$p"; echo "linger=$linger"; } > "$meta.new" && mv "$meta.new" "$meta"
}

# watchdog outlives every kq session: it stops the kernel once no session
# has spoken for `linger` seconds (unless kept), and removes the files once
# the kernel is gone, however it went.
watchdog() {
  idle=0
  while :; do
    last=$(pid)
    sleep 2
    [ -e "$restarting" ] && continue
    alive || break
    if [ -e "$keepf" ]; then idle=0; continue; fi
    if [ -e "$hold" ]; then rm -f "$hold"; idle=0; else idle=$((idle+2)); fi
    if [ "$idle" -ge "$linger" ]; then kill_kernel; break; fi
  done
  cleanup
}

# hold serves one kq session: every line from kq marks the kernel as held;
# a ticker reports a kernel that died, and dies itself (SIGPIPE) when the
# session is gone. EOF on stdin ends the session, not the kernel.
hold() {
  : > "$hold"
  echo "KQ-HOLDER $$"
  (
    while :; do
      # A dead kernel ends the whole session ($$ is the hold shell), even
      # one whose kq is out of reach and sends nothing more.
      if [ ! -e "$restarting" ] && ! alive; then echo KQ-DIED; kill $$ 2>/dev/null; exit 0; fi
      echo KQ-TICK || exit 0
      sleep 1
    done
  ) &
  ticker=$!
  while read -r cmd; do
    : > "$hold"
    case "$cmd" in
      stop) kill $ticker $extra 2>/dev/null; waitgone 30; kill_kernel; finish; echo KQ-STOPPED; exit 0;;
      kill) kill $ticker $extra 2>/dev/null; kill_kernel; finish; echo KQ-STOPPED; exit 0;;
      detach) kill $ticker $extra 2>/dev/null; : > "$keepf"; rm -f "$hold"; echo KQ-DETACHED; exit 0;;
      release) kill $ticker $extra 2>/dev/null; rm -f "$hold"; echo KQ-RELEASED; exit 0;;
    esac
  done
  kill $ticker $extra 2>/dev/null
}

# op_start writes the start script (kq has put it in $start_script),
# starts the kernel and its watchdog, reports the connection file once the
# kernel has written it, and then holds the kernel for this session.
op_start() {
  mkdir -p "$rt" || { echo "KQ-ERROR cannot create runtime dir $rt"; exit 1; }
  echo "KQ-FILE $f"
  printf '%s\n' "$start_script" > "$cmdf"
  [ "$keep" = 1 ] && : > "$keepf"
  spawn
  last=$(pid)
  echo "KQ-PID $last"
  ( trap '' HUP; watchdog ) </dev/null >/dev/null 2>&1 &
  echo $! > "$wdf"
  (
    i=0
    while :; do
      if [ -s "$f" ] && tail -c 2 "$f" | grep -q '}'; then break; fi
      # A kernel started on another machine (ssh node, srun) may write its
      # file where this host cannot see it; its command may print the JSON
      # instead, from a "{" line to a "}" line. Keep a copy here.
      if grep -q '"shell_port"' "$log" 2>/dev/null && sed -n '/^{/,/^}/p' "$log" | grep -q '^}'; then
        sed -n '/^{/,/^}/p' "$log" > "$f.new" && mv "$f.new" "$f"; break
      fi
      if ! alive; then
        echo "KQ-ERROR kernel command exited before writing $f"
        tail -n 20 "$log" | sed 's/^/KQ-LOG /'; echo KQ-FAILED; exit 1
      fi
      i=$((i+1)); if [ $i -gt 1200 ]; then echo "KQ-ERROR no connection file after 120s"; echo KQ-FAILED; exit 1; fi
      sleep 0.1
    done
    echo KQ-JSON-BEGIN; cat "$f"; echo; echo KQ-JSON-END
  ) &
  extra=$!
  hold
}

# op_attach holds a running kq kernel for a new session (a reconnect, or
# kq attach), after sending its connection file.
op_attach() {
  if [ ! -e "$meta" ] || ! alive; then echo KQ-GONE; exit 0; fi
  echo "KQ-FILE $f"; echo "KQ-PID $(pid)"
  echo KQ-JSON-BEGIN; cat "$f"; echo; echo KQ-JSON-END
  extra=
  hold
}

# op_stop stops a kq kernel, after `grace` tenths of a second for a
# shutdown_request to take effect, and removes its files.
op_stop() {
  [ -e "$meta" ] || { echo KQ-GONE; exit 0; }
  waitgone "${grace:-0}"; kill_kernel; finish; echo KQ-STOPPED
}

op_interrupt() {
  if [ ! -e "$meta" ] || ! alive; then echo KQ-GONE; exit 0; fi
  p=$(pid); kill -INT "$p" && echo KQ-DONE
}

# op_restart replaces the kernel process; it reads the same connection
# file, so key and ports stay, and open sessions keep working.
op_restart() {
  if [ ! -e "$meta" ] || ! alive; then echo KQ-GONE; exit 0; fi
  : > "$restarting"
  kill_kernel
  spawn
  rm -f "$restarting"
  echo "KQ-PID $(pid)"
}

# op_list prints every connection file in the runtime dir, kq's or not.
op_list() {
  now=$(date +%s)
  for j in "$rt"/kernel-*.json; do
    [ -e "$j" ] || continue
    b=${j%.json}; kqk=no; p=-; st=-; held=no; kept=no
    if [ -e "$b.kq" ]; then
      kqk=yes; p=$(sed -n 's/^pid=//p' "$b.kq")
      if kill -0 "$p" 2>/dev/null && ! zombie "$p"; then st=alive; else st=dead; fi
    fi
    [ -e "$b.hold" ] && held=yes
    [ -e "$b.keep" ] && kept=yes
    mt=$(date -r "$j" +%s 2>/dev/null || stat -c %Y "$j" 2>/dev/null || echo "$now")
    echo "KQ-ENTRY $j|$((now-mt))|$kqk|$p|$st|$held|$kept"
    echo KQ-JSON-BEGIN; cat "$j"; echo; echo KQ-JSON-END
  done
  echo KQ-END
}

# op_cat prints one connection file given by path.
op_cat() {
  [ -f "$path" ] || { echo "KQ-ERROR no such file: $path"; exit 1; }
  echo "KQ-FILE $path"; echo KQ-JSON-BEGIN; cat "$path"; echo; echo KQ-JSON-END
}

op_rm() { rm -f "$path"; echo KQ-DONE; }
