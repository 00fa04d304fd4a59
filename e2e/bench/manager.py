"""One kernel's life under jupyter_client's KernelManager, as JupyterLab,
Notebook and VS Code drive a kernel: start it and run a first cell, interrupt
a running cell, restart it (twice) and run a cell after each, shut it down.
Prints the times, in seconds, as one JSON line.

    python3 manager.py KERNEL_NAME   (its kernelspec found on JUPYTER_PATH)
"""
import json
import sys
import time

from jupyter_client.manager import KernelManager

TIMEOUT = 60


def cell(kc, code="1+1"):
    """Runs code and returns its execute_reply's content."""
    return kc.execute_interactive(code, timeout=TIMEOUT, output_hook=lambda m: None)["content"]


def interrupt(km, kc):
    """Seconds from interrupt_kernel to the reply of a cell it interrupted,
    once the cell's code runs (a SIGINT that comes before ipykernel has put
    in its handler for the cell is lost, as it would be for a person)."""
    msg_id = kc.execute("import time; print('running', flush=True); time.sleep(30)")
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:  # the cell's own code runs: its output
        m = kc.get_iopub_msg(timeout=TIMEOUT)
        if m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "stream":
            break
    t = time.monotonic()
    km.interrupt_kernel()
    while True:
        reply = kc.get_shell_msg(timeout=TIMEOUT)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    took = time.monotonic() - t
    if reply["content"].get("ename") != "KeyboardInterrupt":
        raise SystemExit(f"interrupt: the cell ended with {reply['content'].get('status')}, not KeyboardInterrupt")
    return took


def main():
    out = {}
    t0 = time.monotonic()
    km = KernelManager(kernel_name=sys.argv[1])
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=TIMEOUT)
    cell(kc)
    out["first"] = time.monotonic() - t0
    out["interrupt"] = interrupt(km, kc)
    out["restart"] = []
    for _ in range(2):
        t = time.monotonic()
        km.restart_kernel(now=False)
        kc.wait_for_ready(timeout=TIMEOUT)
        if cell(kc)["status"] != "ok":
            raise SystemExit("the cell after the restart failed")
        out["restart"].append(time.monotonic() - t)
    t = time.monotonic()
    km.shutdown_kernel(now=False)
    out["shutdown"] = time.monotonic() - t
    kc.stop_channels()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
