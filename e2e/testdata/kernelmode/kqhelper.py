"""Jupyter's side of kq's kernel-mode end-to-end tests (e2e/kernelmode_test.go).

Run with Debian's /usr/bin/python3. The first argument names the scenario:

  km FILE?      jupyter_client's KernelManager on the kernelspec $KQ_KERNEL_NAME
  nbclient NB   nbclient with interrupt_on_timeout on the notebook NB
  vscode        a launcher that behaves as VS Code's Jupyter extension does
  ping FILE     one execute through an existing connection file

Every scenario talks to the Go test in lines on stdout:

  KQSTEP NAME JSON   a checkpoint; the script then waits for one line on
                     stdin, so the Go side can look at both machines while
                     nothing moves
  KQDONE JSON        the end
"""

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from queue import Empty

from jupyter_client import BlockingKernelClient, KernelManager

PORT_NAMES = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")


def step(name, **data):
    print("KQSTEP %s %s" % (name, json.dumps(data)), flush=True)
    if not sys.stdin.readline():
        sys.exit("the test went away")


def done(**data):
    print("KQDONE " + json.dumps(data), flush=True)


def run(kc, code, timeout=60, interrupt=None):
    """Execute code; return (reply content, stdout text, error names, seconds).

    interrupt, if given, is called once the cell is seen running; the
    seconds count from that call to the reply.
    """
    msg_id = kc.execute(code)
    out, errors = [], []
    t0 = time.time()
    deadline = t0 + timeout
    interrupted = interrupt is None
    reply = None
    idle = False
    while time.time() < deadline and not (reply is not None and idle):
        try:
            m = kc.get_iopub_msg(timeout=0.2)
        except Empty:
            m = None
        if m is not None and m["parent_header"].get("msg_id") == msg_id:
            t = m["msg_type"]
            if t == "execute_input" and not interrupted:
                # The kernel runs the cell: let it fall asleep, then interrupt.
                time.sleep(1.0)
                t0 = time.time()
                interrupt()
                interrupted = True
            elif t == "stream":
                out.append(m["content"]["text"])
            elif t == "error":
                errors.append(m["content"]["ename"])
            elif t == "status" and m["content"]["execution_state"] == "idle":
                idle = True
        if reply is None:
            try:
                r = kc.get_shell_msg(timeout=0.05)
            except Empty:
                r = None
            if r is not None and r["parent_header"].get("msg_id") == msg_id:
                reply = r["content"]
    if reply is None:
        raise SystemExit("no execute_reply to %r within %ss" % (code, timeout))
    return reply, "".join(out), errors, round(time.time() - t0, 3)


def run_after_error(kc, code):
    """run, for the first cell after one that failed: ipykernel aborts the
    requests it gets while it still clears its queue after an error
    (stop_on_error), and a fast enough transport delivers the next cell in
    that window, so an "aborted" reply is run again, as a user would."""
    for _ in range(5):
        reply, out, errors, secs = run(kc, code)
        if reply["status"] != "aborted":
            break
        time.sleep(0.2)
    return reply, out, errors, secs


def ports_of(info):
    return [int(info[k]) for k in PORT_NAMES]


def new_client(cf=None, km=None):
    if km is not None:
        kc = km.client()
    else:
        kc = BlockingKernelClient(connection_file=cf)
        kc.load_connection_file()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    return kc


def km_scenario():
    """KernelManager: start, execute, interrupt, both restarts, shutdown."""
    from jupyter_core.paths import jupyter_runtime_dir

    name = os.environ.get("KQ_KERNEL_NAME", "kqtest")
    # The file where Jupyter Server's MultiKernelManager puts it.
    os.makedirs(jupyter_runtime_dir(), mode=0o700, exist_ok=True)
    cf = os.path.join(jupyter_runtime_dir(), "kernel-%s.json" % uuid.uuid4())
    km = KernelManager(kernel_name=name, connection_file=cf)
    t0 = time.time()
    km.start_kernel()
    kc = new_client(km=km)
    info = km.get_connection_info()
    step("started", file=km.connection_file, ports=ports_of(info), secs=round(time.time() - t0, 3),
         kq_pid=km.provisioner.process.pid, interrupt_mode=km.kernel_spec.interrupt_mode)

    reply, out, _, _ = run(kc, "import os; kq_state = 42; print(os.getpid())")
    step("executed", status=reply["status"], out=out.strip())

    reply, out, errors, secs = run(kc, "import time; time.sleep(60); print('slept')", timeout=30,
                                   interrupt=km.interrupt_kernel)
    alive = km.is_alive()
    reply2, out2, errors2, _ = run_after_error(kc, "print(kq_state)")
    step("interrupted", status=reply["status"], ename=reply.get("ename", ""), errors=errors, out=out,
         secs=secs, kq_alive=alive, after=out2.strip(), after_status=reply2["status"], after_errors=errors2,
         kq_pid=km.provisioner.process.pid)

    for now in () if os.environ.get("KQ_KM_SHORT") else (False, True):
        kc.stop_channels()
        t0 = time.time()
        km.restart_kernel(now=now)
        kc = new_client(km=km)
        secs = round(time.time() - t0, 3)
        reply, out, _, _ = run(kc, "import os; print(os.getpid(), 'kq_state' in globals())")
        pid, fresh = out.split()
        # State for the next restart to lose.
        run(kc, "kq_state = 43")
        step("restarted_now" if now else "restarted", status=reply["status"], pid=int(pid),
             fresh=fresh == "False", secs=secs, ports=ports_of(km.get_connection_info()),
             kq_pid=km.provisioner.process.pid, file=km.connection_file)

    kc.stop_channels()
    cf = km.connection_file
    t0 = time.time()
    km.shutdown_kernel()
    secs = round(time.time() - t0, 3)
    done(secs=secs, status=str(km._shutdown_status), file_left=os.path.exists(cf),
         shutdown_wait_time=km.shutdown_wait_time)


def nbclient_scenario(path):
    """A cell that outlives the timeout is interrupted; the next cell runs."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name=os.environ.get("KQ_KERNEL_NAME", "kqtest"), timeout=3,
                            interrupt_on_timeout=True, allow_errors=True, startup_timeout=60)
    t0 = time.time()
    client.execute()
    secs = round(time.time() - t0, 3)
    cells = []
    for c in nb.cells:
        outs = []
        for o in c.get("outputs", []):
            if o["output_type"] == "stream":
                outs.append(o["text"].strip())
            elif o["output_type"] == "error":
                outs.append("ERROR " + o["ename"])
        cells.append(outs)
    done(secs=secs, cells=cells)


def descendants(pid):
    """Every process below pid, found by walking /proc as VS Code does."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            out.append(c)
            todo.append(c)
    return out


class VSCodeLauncher:
    """What VS Code's Jupyter extension does with a kernelspec: its own
    connection file (kernel-v3<id>.json, ports from 9000 upwards, its own
    key), the spec's argv, SIGINT to the process tree to interrupt, SIGTERM
    and a fresh launch on new ports to restart."""

    def __init__(self, spec_file, runtime_dir):
        with open(spec_file) as f:
            self.spec = json.load(f)
        self.rt = runtime_dir
        self.next_port = 9000
        self.proc = self.cf = self.kc = None

    def free_ports(self):
        ports = []
        while len(ports) < 5:
            p = self.next_port
            self.next_port += 1
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
            finally:
                s.close()
            ports.append(p)
        return ports

    def launch(self):
        ports = self.free_ports()
        self.cf = os.path.join(self.rt, "kernel-v3%s.json" % secrets.token_hex(10))
        info = dict(zip(PORT_NAMES, ports), ip="127.0.0.1", key=str(uuid.uuid4()), transport="tcp",
                    signature_scheme="hmac-sha256", kernel_name="kqtest")
        os.makedirs(self.rt, exist_ok=True)
        with open(self.cf, "w") as f:
            json.dump(info, f)
        os.chmod(self.cf, 0o600)
        argv = [a.replace("{connection_file}", self.cf) for a in self.spec["argv"]]
        t0 = time.time()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        self.kc = new_client(cf=self.cf)
        return ports, round(time.time() - t0, 3)

    def interrupt(self):
        for pid in [self.proc.pid] + descendants(self.proc.pid):
            try:
                os.kill(pid, signal.SIGINT)
            except ProcessLookupError:
                pass

    def kill(self):
        """SIGTERM; returns kq's exit code and how long it took."""
        self.kc.stop_channels()
        t0 = time.time()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = "still running after 10s"
        os.remove(self.cf)
        return code, round(time.time() - t0, 3)


def vscode_scenario():
    rt = os.environ["JUPYTER_RUNTIME_DIR"]
    spec = os.path.join(os.environ["JUPYTER_PATH"], "kernels", "kqtest", "kernel.json")
    v = VSCodeLauncher(spec, rt)
    ports, secs = v.launch()
    reply, out, _, _ = run(v.kc, "import os; kq_state = 42; print(os.getpid())")
    step("launched", ports=ports, secs=secs, kq_pid=v.proc.pid, out=out.strip(), file=v.cf)

    reply, out, errors, secs = run(v.kc, "import time; time.sleep(60); print('slept')", timeout=30,
                                   interrupt=v.interrupt)
    alive = v.proc.poll() is None
    _, after, _, _ = run_after_error(v.kc, "print(kq_state)")
    step("interrupted", status=reply["status"], ename=reply.get("ename", ""), errors=errors, secs=secs,
         kq_alive=alive, after=after.strip())

    code, stop_secs = v.kill()
    old = ports
    ports, secs = v.launch()
    reply, out, _, _ = run(v.kc, "import os; print(os.getpid(), 'kq_state' in globals())")
    pid, fresh = out.split()
    step("restarted", old_ports=old, ports=ports, stop_code=code, stop_secs=stop_secs, pid=int(pid),
         fresh=fresh == "False", kq_pid=v.proc.pid, file=v.cf)

    code, stop_secs = v.kill()
    done(stop_code=code, stop_secs=stop_secs)


def ping_scenario(cf):
    kc = new_client(cf=cf)
    reply, out, _, _ = run(kc, os.environ.get("KQ_TEST_CODE", "import os; print(os.getpid())"))
    kc.stop_channels()
    done(status=reply["status"], out=out.strip())


if __name__ == "__main__":
    what = sys.argv[1]
    if what == "km":
        km_scenario()
    elif what == "nbclient":
        nbclient_scenario(sys.argv[2])
    elif what == "vscode":
        vscode_scenario()
    elif what == "ping":
        ping_scenario(sys.argv[2])
    else:
        sys.exit("unknown scenario " + what)
