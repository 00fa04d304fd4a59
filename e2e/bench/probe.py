# The benchmark's measuring client: a real jupyter_client (pyzmq on
# libzmq), started once and kept warm, so that its start-up is never part
# of a method's time. It reads one JSON command per line on stdin and
# answers with one JSON line on stdout. Every wait has a deadline.
import json, os, sys, threading, time

import zmq
from jupyter_client.connect import tunnel_to_kernel
from jupyter_client.session import Session

TIMEOUT = 60.0
ctx = zmq.Context()
kc = None


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def now():
    return time.monotonic()


class Client:
    """Plain synchronous pyzmq sockets signed by jupyter_client's Session:
    the least a frontend does, so that the client adds as little as it can
    to what is measured."""

    def __init__(self, info):
        self.session = Session(key=info["key"].encode(), signature_scheme=info["signature_scheme"])
        url = "tcp://%s:%%d" % info["ip"]
        self.shell = self.sock(zmq.DEALER, url % info["shell_port"])
        self.control = self.sock(zmq.DEALER, url % info["control_port"])
        self.iopub = self.sock(zmq.SUB, url % info["iopub_port"])
        self.iopub.setsockopt(zmq.SUBSCRIBE, b"")

    def sock(self, kind, url):
        s = ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(url)
        return s

    def execute(self, code, **extra):
        content = dict(code=code, silent=False, store_history=False, user_expressions={},
                       allow_stdin=False, stop_on_error=True)
        content.update(extra)
        return self.session.send(self.shell, "execute_request", content)["header"]["msg_id"]

    def close(self):
        for s in (self.shell, self.control, self.iopub):
            s.close(linger=0)


def shell_reply(msg_id, deadline):
    while now() < deadline:
        if not kc.shell.poll(100):
            continue
        _, m = kc.session.recv(kc.shell, mode=0)
        if m["parent_header"].get("msg_id") == msg_id:
            return m
    raise TimeoutError("no execute_reply")


def iopub_frames(timeout_ms):
    """One raw iopub message: (header, parent_header, content_len). The
    content is not parsed, so that the client's JSON decoding does not
    count as transport time."""
    if not kc.iopub.poll(timeout_ms):
        return None
    frames = kc.iopub.recv_multipart(copy=False)
    i = [bytes(f.buffer) for f in frames[:8]].index(b"<IDS|MSG>")
    header = json.loads(bytes(frames[i + 2].buffer))
    parent = json.loads(bytes(frames[i + 3].buffer))
    return header, parent, len(frames[i + 5].buffer)


def connect(cmd):
    """Connect to a connection file (after opening jupyter_client's ssh
    tunnel to it when asked) and run the first cell at once; the answer is
    sent the moment execute_reply arrives."""
    global kc
    info = json.load(open(cmd["cf"]))
    if cmd.get("tunnel"):
        os.environ["PATH"] = cmd["path"] + os.pathsep + os.environ["PATH"]
        shell, iopub, stdin, hb, control = tunnel_to_kernel(info, cmd["tunnel"])
        info.update(shell_port=shell, iopub_port=iopub, stdin_port=stdin, hb_port=hb, control_port=control)
        os.environ["PATH"] = os.environ["PATH"].split(os.pathsep, 1)[1]
    kc = Client(info)
    msg_id = kc.execute("import os", user_expressions={"pid": "os.getpid()"})
    m = shell_reply(msg_id, now() + TIMEOUT)
    t = time.time()
    pid = int(m["content"]["user_expressions"]["pid"]["data"]["text/plain"])
    out({"first": t, "pid": pid})


def settle():
    """Run no-op cells until one is seen on iopub: a SUB socket misses what
    is published before its subscription arrives (ZeroMQ's slow joiner)."""
    for _ in range(50):
        msg_id = kc.execute("pass")
        deadline = now() + 2
        while now() < deadline:
            r = iopub_frames(100)
            if r and r[1].get("msg_id") == msg_id and r[0]["msg_type"] == "status":
                return
    raise TimeoutError("iopub never delivered")


def rtt(cmd):
    """Execute RTT (request to execute_reply) and RTT until idle (request
    to status idle on iopub) of n tiny cells, in milliseconds."""
    settle()
    reply, idle = [], []
    for _ in range(cmd["n"]):
        t0 = now()
        msg_id = kc.execute("pass")
        shell_reply(msg_id, t0 + TIMEOUT)
        reply.append((now() - t0) * 1e3)
        while now() < t0 + TIMEOUT:
            r = iopub_frames(100)
            if r and r[1].get("msg_id") == msg_id and r[0]["msg_type"] == "status":
                break
        idle.append((now() - t0) * 1e3)
    out({"reply": reply, "idle": idle})


BUSY_START = """
import threading as _t, sys as _s, time as _tm
_bench_stop = _t.Event()
def _bench_busy():
    s = 'b' * 65536
    while not _bench_stop.is_set():
        _s.stdout.write(s); _s.stdout.flush(); _tm.sleep(0.01)
_t.Thread(target=_bench_busy, daemon=True).start()
"""


def run_quiet(code):
    msg_id = kc.execute(code)
    shell_reply(msg_id, now() + TIMEOUT)


def busy(cmd):
    """Start or stop a kernel thread that streams 64 KiB stdout messages
    every 10 ms, so that RTTs can be measured while iopub is loaded."""
    run_quiet(BUSY_START if cmd["on"] else "_bench_stop.set(); _tm.sleep(0.05)")
    out({"ok": True})


def throughput(cmd):
    """Seconds from the execute_request to the last of count display_data
    messages of size bytes each, received raw on iopub."""
    size, count = cmd["size"], cmd["count"]
    run_quiet("from IPython.display import display as _d; _blob = 'x' * %d" % size)
    settle()
    code = "for _i in range(%d): _d({'text/plain': _blob}, raw=True)" % count
    t0 = now()
    msg_id = kc.execute(code)
    got, nbytes = 0, 0
    while got < count and now() < t0 + TIMEOUT:
        r = iopub_frames(100)
        if r and r[1].get("msg_id") == msg_id and r[0]["msg_type"] == "display_data":
            got += 1
            nbytes += r[2]
    dt = now() - t0
    if got < count:
        raise TimeoutError("got %d of %d messages" % (got, count))
    run_quiet("del _blob")
    out({"seconds": dt, "bytes": nbytes})


def stream(cmd):
    """Like throughput, for more output than the kernel's iopub queue holds
    (its PUB socket drops messages beyond 1000 queued for a slow reader):
    count messages of size bytes in cells of at most batch messages, each
    cell sent once the last message of the one before it has arrived.
    Seconds from the first request to the last message."""
    size, count, batch = cmd["size"], cmd["count"], cmd["batch"]
    run_quiet("from IPython.display import display as _d; _blob = 'x' * %d" % size)
    settle()
    t0 = now()
    got, nbytes = 0, 0
    while got < count:
        n = min(batch, count - got)
        msg_id = kc.execute("for _i in range(%d): _d({'text/plain': _blob}, raw=True)" % n)
        part, deadline = 0, now() + TIMEOUT
        while part < n and now() < deadline:
            r = iopub_frames(100)
            if r and r[1].get("msg_id") == msg_id and r[0]["msg_type"] == "display_data":
                part += 1
                nbytes += r[2]
        if part < n:
            raise TimeoutError("got %d of %d messages" % (got + part, count))
        got += n
    dt = now() - t0
    run_quiet("del _blob")
    out({"seconds": dt, "bytes": nbytes})


def close(cmd):
    """Shut the kernel down when asked (the methods without kq), then
    drop the client."""
    global kc
    if kc is not None and cmd.get("shutdown"):
        kc.session.send(kc.control, "shutdown_request", {"restart": False})
        kc.control.poll(5000)
    if kc is not None:
        kc.close()
    kc = None
    out({"ok": True})


# The scale mode's first cells: one thread per session, each with its own
# sockets, so that many sessions are measured at once while the main loop
# goes on answering.
cells_done = []
cells_cv = threading.Condition()


def one_cell(tag, cf, timeout):
    """Connect to cf and run one cell; record when its execute_reply came."""
    res = {"tag": tag}
    try:
        c = Client(json.load(open(cf)))
        try:
            msg_id = c.execute("import os", user_expressions={"pid": "os.getpid()"})
            deadline = now() + timeout
            while True:
                if now() > deadline:
                    raise TimeoutError("no execute_reply in %ss" % timeout)
                if not c.shell.poll(100):
                    continue
                _, m = c.session.recv(c.shell, mode=0)
                if m["parent_header"].get("msg_id") == msg_id:
                    break
            res["first"] = time.time()
            res["pid"] = int(m["content"]["user_expressions"]["pid"]["data"]["text/plain"])
        finally:
            c.close()
    except Exception as e:
        res["error"] = "%s: %s" % (type(e).__name__, e)
    with cells_cv:
        cells_done.append(res)
        cells_cv.notify_all()


def cell_start(cmd):
    """Start one session's first cell in a thread of its own; answer now."""
    threading.Thread(target=one_cell, args=(cmd["tag"], cmd["cf"], cmd.get("timeout", TIMEOUT)), daemon=True).start()
    out({"ok": True})


def cells(cmd):
    """The first cells finished since the last call, waiting at most
    cmd["wait"] seconds for one."""
    deadline = now() + cmd.get("wait", 0)
    with cells_cv:
        while not cells_done and now() < deadline:
            cells_cv.wait(max(0.0, deadline - now()))
        got = list(cells_done)
        cells_done.clear()
    out({"cells": got})


OPS = {"connect": connect, "rtt": rtt, "busy": busy, "throughput": throughput, "close": close, "stream": stream,
       "cell_start": cell_start, "cells": cells}

out({"ready": True})
for line in sys.stdin:
    cmd = json.loads(line)
    try:
        OPS[cmd["op"]](cmd)
    except Exception as e:  # reported to the benchmark, which fails the run
        out({"error": "%s: %s" % (type(e).__name__, e)})
