package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kq-dev/kq/e2e/sshdtest"
)

// nbDrivePy drives Notebook 6 in headless Chromium through selenium, as a
// person would: it runs cells with Shift+Enter and uses the Kernel and
// File menus. It prints one "TAG {json}" line per event and, at each SYNC
// line, waits for the test to check the remote side and answer "go".
const nbDrivePy = `import json, os, sys, time, traceback
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.support.ui import WebDriverWait
from selenium.webdriver.support import expected_conditions as EC

url, shots, profile_dir = sys.argv[1], sys.argv[2], sys.argv[3]
n_shot = 0

def say(tag, **kw):
    print(tag + " " + json.dumps(kw), flush=True)

def sync(name, **kw):
    # The test checks the remote side, then says go on.
    say("SYNC", step=name, **kw)
    line = sys.stdin.readline()
    if line.strip() != "go":
        raise SystemExit("test said %r at %s" % (line, name))

opts = webdriver.ChromeOptions()
opts.binary_location = "/usr/bin/chromium"
for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--disable-dev-shm-usage", "--window-size=1280,1000", "--user-data-dir=" + profile_dir]:
    opts.add_argument(a)
service = Service(executable_path="/usr/bin/chromedriver", log_path=os.path.join(shots, "chromedriver.log"))
driver = webdriver.Chrome(service=service, options=opts)
say("PIDS", chromedriver=service.process.pid)

def shot(name):
    global n_shot
    n_shot += 1
    path = os.path.join(shots, "%02d-%s.png" % (n_shot, name))
    driver.save_screenshot(path)
    say("SHOT", path=path)

def wait(cond, timeout, what):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(cond)
    except Exception:
        shot("timeout-" + what.replace(" ", "-"))
        raise SystemExit("timed out after %ss waiting for %s" % (timeout, what))

def css(sel):
    return driver.find_element(By.CSS_SELECTOR, sel)

def idle(timeout=60):
    wait(lambda d: "kernel_idle_icon" in (css("#kernel_indicator_icon").get_attribute("class") or ""),
         timeout, "kernel idle")

def cell(i):
    return driver.find_elements(By.CSS_SELECTOR, "#notebook-container .cell")[i]

def output(i):
    return "\n".join(e.text for e in cell(i).find_elements(By.CSS_SELECTOR, ".output_subarea"))

def prompt(i):
    return cell(i).find_element(By.CSS_SELECTOR, ".input_prompt").text

def run_cell(i):
    # Click into the cell's editor and press Shift+Enter, as a person would.
    cell(i).find_element(By.CSS_SELECTOR, ".CodeMirror").click()
    ActionChains(driver).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()

def menu(top, item):
    css(top).click()
    wait(EC.element_to_be_clickable((By.CSS_SELECTOR, item + " > a")), 10, item).click()

def output_has(i, text, timeout, what):
    wait(lambda d: text in output(i), timeout, what)
    return output(i)

try:
    driver.get(url)
    wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#notebook-container .cell"), 60, "the notebook")
    idle(120)
    shot("opened")
    kernel_name = driver.execute_script("return Jupyter.notebook.kernel.name")
    say("KERNEL", name=kernel_name)

    run_cell(0)
    out = output_has(0, "set 42", 60, "the first cell's output")
    say("CELL", i=0, out=out, prompt=prompt(0))
    shot("variable-set")
    sync("set")

    run_cell(1)
    wait(lambda d: prompt(1) == "In [*]:" and "started" in output(1), 30, "the sleep to start")
    time.sleep(1)
    shot("sleeping")
    t0 = time.time()
    menu("#kernellink", "#int_kernel")
    out = output_has(1, "KeyboardInterrupt", 30, "KeyboardInterrupt")
    took = time.time() - t0
    idle(30)
    shot("interrupted")
    say("CELL", i=1, out=out, seconds=took)

    run_cell(2)
    out = output_has(2, "still 42", 30, "the variable after the interrupt")
    say("CELL", i=2, out=out)
    sync("interrupted")

    menu("#kernellink", "#restart_kernel")
    btn = wait(EC.element_to_be_clickable((By.CSS_SELECTOR, ".modal-dialog .modal-footer .btn-danger")), 10,
               "the restart dialog")
    shot("restart-dialog")
    say("DIALOG", button=btn.text)
    btn.click()
    wait(EC.invisibility_of_element_located((By.CSS_SELECTOR, ".modal-dialog")), 10, "the dialog to close")
    sync("restarting")
    idle(120)
    shot("restarted")

    run_cell(3)
    out = output_has(3, "NameError", 60, "NameError after the restart")
    say("CELL", i=3, out=out)
    shot("fresh-namespace")
    sync("restarted")

    shot("before-close")
    menu("#filelink", "#close_and_halt")
    closed = True
    try:
        WebDriverWait(driver, 20, poll_frequency=0.2).until(lambda d: len(d.window_handles) == 0)
    except Exception:
        closed = False
    say("CLOSED", window_closed=closed)
    sync("closed")
except SystemExit as e:
    say("FAIL", error=str(e))
    sys.exit(1)
except Exception:
    say("FAIL", error=traceback.format_exc())
    try:
        shot("error")
    except Exception:
        pass
    sys.exit(1)
finally:
    try:
        driver.quit()
    except Exception:
        pass
say("DONE")
`

// nbCells are the notebook's cells, in the order nbDrivePy runs them.
var nbCells = []string{
	"kq_var = 42; print('set', kq_var)",
	"import time; print('started', flush=True); time.sleep(60); print('slept')",
	"print('still', kq_var)",
	"print(kq_var)",
}

// notebookServer is a running `jupyter notebook`.
type notebookServer struct {
	*helperProc
	url, token string
	runtime    string // its JUPYTER_RUNTIME_DIR
	dir        string // its notebook dir
}

// startNotebook starts Debian's Notebook 6 on a free 127.0.0.1 port with a
// token, the given JUPYTER_PATH and private config, data and runtime dirs,
// and waits until it answers.
func startNotebook(t *testing.T, e *env, jupyterPath, artifacts string) *notebookServer {
	t.Helper()
	base := filepath.Join(e.dir, "notebook")
	s := &notebookServer{token: fmt.Sprintf("kq%d", time.Now().UnixNano()),
		runtime: filepath.Join(base, "runtime"), dir: filepath.Join(base, "notebooks")}
	cfgDir, dataDir := filepath.Join(base, "config"), filepath.Join(base, "data")
	for _, d := range []string{s.runtime, s.dir, cfgDir, dataDir} {
		must(t, os.MkdirAll(d, 0o700))
	}
	// The token is in the config file, not on a command line; nothing
	// here reaches for the network (no browser, no MathJax CDN).
	must(t, os.WriteFile(filepath.Join(cfgDir, "jupyter_notebook_config.json"), mustMarshal(t, map[string]any{
		"NotebookApp": map[string]any{"token": s.token, "open_browser": false, "enable_mathjax": false,
			"allow_root": true, "shutdown_no_activity_timeout": 600},
	}), 0o600))
	port := freeLocalPort(t)
	s.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	cmd := exec.Command("/usr/bin/jupyter-notebook", "--no-browser", "--ip=127.0.0.1",
		fmt.Sprintf("--port=%d", port), "--port-retries=0", "--notebook-dir="+s.dir)
	cmd.Env = append(cleanEnv(), "JUPYTER_PATH="+jupyterPath, "JUPYTER_CONFIG_DIR="+cfgDir,
		"JUPYTER_DATA_DIR="+dataDir, "JUPYTER_RUNTIME_DIR="+s.runtime)
	cmd.Env = append(cmd.Env, e.extraEnv...)
	s.helperProc = startHelper(t, "notebook-server", artifacts, cmd)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("notebook server log (%s):\n%s", s.log, s.logText())
		}
	})
	waitFor(t, 60*time.Second, "the notebook server to answer", func() bool {
		select {
		case <-s.done:
			t.Fatalf("notebook server exited:\n%s", s.logText())
		default:
		}
		var st map[string]any
		return s.api("/api/status", &st) == nil
	})
	return s
}

// api GETs a REST path of the server into v.
func (s *notebookServer) api(path string, v any) error {
	c := http.Client{Timeout: 5 * time.Second}
	req, err := http.NewRequest("GET", s.url+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "token "+s.token)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// kernels lists the server's running kernels.
func (s *notebookServer) kernels(t *testing.T) []map[string]any {
	t.Helper()
	var ks []map[string]any
	must(t, s.api("/api/kernels", &ks))
	return ks
}

// writeNotebook writes test.ipynb bound to the kqtest kernelspec.
func (s *notebookServer) writeNotebook(t *testing.T, cells []string) {
	t.Helper()
	var cs []map[string]any
	for i, src := range cells {
		cs = append(cs, map[string]any{"id": fmt.Sprintf("cell-%d", i), "cell_type": "code", "execution_count": nil, "metadata": map[string]any{},
			"outputs": []any{}, "source": src})
	}
	nb := map[string]any{"nbformat": 4, "nbformat_minor": 5, "cells": cs, "metadata": map[string]any{
		"kernelspec":    map[string]any{"name": "kqtest", "display_name": "p (remote)", "language": "python"},
		"language_info": map[string]any{"name": "python"},
	}}
	must(t, os.WriteFile(filepath.Join(s.dir, "test.ipynb"), mustMarshal(t, nb), 0o600))
}

// browser is nbDrivePy running: its events, read until the next SYNC.
type browser struct {
	*helperProc
	t       *testing.T
	shots   []string
	events  []string
	seconds float64 // how long the interrupt took to show
}

// until reads the driver's events until SYNC step (or DONE when step is
// ""), collecting screenshots and failing on FAIL; it returns the events
// seen on the way.
func (b *browser) until(step string, timeout time.Duration) []string {
	t := b.t
	t.Helper()
	var seen []string
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-b.lines:
			if !ok {
				t.Fatalf("the browser driver ended before %q; log %s:\n%s", step, b.log, b.logText())
			}
			tag, data, _ := strings.Cut(l, " ")
			var kv map[string]any
			_ = json.Unmarshal([]byte(data), &kv)
			switch tag {
			case "SHOT":
				p, _ := kv["path"].(string)
				b.shots = append(b.shots, p)
				t.Logf("screenshot %s", p)
				continue
			case "FAIL":
				t.Fatalf("browser: %v (screenshots %v)", kv["error"], b.shots)
			case "SYNC":
				if kv["step"] == step {
					return seen
				}
				t.Fatalf("browser at step %v, want %q", kv["step"], step)
			case "DONE":
				if step == "" {
					return seen
				}
				t.Fatalf("browser done before step %q", step)
			}
			seen = append(seen, l)
			b.events = append(b.events, l)
		case <-deadline:
			t.Fatalf("browser did not reach %q within %s; screenshots %v; log %s:\n%s",
				step, timeout, b.shots, b.log, b.logText())
		}
	}
}

// goOn tells the driver to go on past a SYNC.
func (b *browser) goOn() {
	_, err := io.WriteString(b.stdin, "go\n")
	must(b.t, err)
}

// cellOut finds the CELL event for cell i among events.
func cellOut(t *testing.T, events []string, i int) (out string, seconds float64) {
	t.Helper()
	for _, l := range events {
		if data, ok := strings.CutPrefix(l, "CELL "); ok {
			var c struct {
				I       int     `json:"i"`
				Out     string  `json:"out"`
				Seconds float64 `json:"seconds"`
			}
			must(t, json.Unmarshal([]byte(data), &c))
			if c.I == i {
				return c.Out, c.Seconds
			}
		}
	}
	t.Fatalf("no output of cell %d among %q", i, events)
	return "", 0
}

// startBrowser runs nbDrivePy on url with a fresh Chromium profile.
func startBrowser(t *testing.T, e *env, url, artifacts string) *browser {
	t.Helper()
	script := filepath.Join(e.dir, "nbdrive.py")
	must(t, os.WriteFile(script, []byte(nbDrivePy), 0o644))
	profileDir := filepath.Join(e.dir, "chromium-profile")
	cmd := exec.Command(sysPython, script, url, artifacts, profileDir)
	cmd.Env = append(cleanEnv(), "HOME="+e.dir)
	b := &browser{helperProc: startLines(t, "browser-driver", artifacts, cmd), t: t}
	t.Cleanup(func() { killLeftovers(t, profileDir) })
	return b
}

// TestNotebook: Notebook 6 in headless Chromium, driven through its menus,
// runs a kqtest notebook whose kernel is `kq kernel p`: a cell sets a
// variable; Kernel > Interrupt stops time.sleep(60) within seconds and the
// variable survives; Kernel > Restart gives one fresh remote kernel (the
// variable is gone: NameError); File > Close and Halt leaves no remote
// kernel, no kq process and no file on either side.
func TestNotebook(t *testing.T) {
	s := startNotebookRun(t)
	first := s.setVariable()
	s.interrupt(first)
	second := s.restart(first)
	s.closeAndHalt()
	s.stopServer(append(first, second...))
}

// notebookRun is one TestNotebook session: the notebook server with a
// kqtest notebook, and the browser driver at its steps.
type notebookRun struct {
	t  *testing.T
	e  *env
	nb *notebookServer
	b  *browser
}

// startNotebookRun starts the notebook server with kq's kernelspec and
// opens test.ipynb in the browser driver.
func startNotebookRun(t *testing.T) *notebookRun {
	e := newEnv(t, sshdtest.Options{})
	e.writeConfig(map[string]profile{"p": e.baseProfile()})
	artifacts := artifactDir(t)
	t.Logf("artefacts in %s", artifacts)
	nb := startNotebook(t, e, e.kqKernelspec("p"), artifacts)
	nb.writeNotebook(t, nbCells)
	b := startBrowser(t, e, nb.url+"/notebooks/test.ipynb?token="+nb.token, artifacts)
	return &notebookRun{t: t, e: e, nb: nb, b: b}
}

// setVariable waits for the first cell to have set the variable and
// checks that the notebook chose the kqtest kernel and that exactly one
// remote kernel and one kq kernel serve it; it returns that kernel.
func (s *notebookRun) setVariable() []int {
	t, e := s.t, s.e
	ev := s.b.until("set", 3*time.Minute)
	if !strings.Contains(strings.Join(ev, "\n"), `KERNEL {"name": "kqtest"}`) {
		t.Fatalf("the notebook did not run the kqtest kernel: %q", ev)
	}
	first := e.waitRemoteKernels(t, 1, 30*time.Second)
	if n := len(e.kqKernelProcs()); n != 1 {
		t.Errorf("%d kq kernel processes, want 1", n)
	}
	s.b.goOn()
	return first
}

// interrupt checks Kernel > Interrupt of a time.sleep(60): the cell must
// show KeyboardInterrupt within seconds, and the same kernel must keep
// the variable.
func (s *notebookRun) interrupt(first []int) {
	t := s.t
	ev := s.b.until("interrupted", 3*time.Minute)
	out, secs := cellOut(t, ev, 1)
	if !strings.Contains(out, "KeyboardInterrupt") || strings.Contains("\n"+out+"\n", "\nslept\n") {
		t.Errorf("Kernel > Interrupt: output %q", out)
	}
	if secs > 10 {
		t.Errorf("KeyboardInterrupt showed %.1fs after Kernel > Interrupt", secs)
	}
	if out, _ := cellOut(t, ev, 2); !strings.Contains(out, "still 42") {
		t.Errorf("after the interrupt the variable is %q", out)
	}
	s.e.waitRemoteKernels(t, 1, 10*time.Second)
	if !sshdtest.ProcessAlive(first[0]) {
		t.Errorf("the interrupt replaced kernel %d", first[0])
	}
	s.b.goOn()
}

// restart checks Kernel > Restart: one new remote kernel, and only it,
// must run the next cell in a fresh namespace; it returns that kernel.
func (s *notebookRun) restart(first []int) []int {
	t, b := s.t, s.b
	b.until("restarting", time.Minute)
	second := s.e.waitRemoteKernels(t, 1, 2*time.Minute, first...)
	b.goOn()
	ev := b.until("restarted", 3*time.Minute)
	if out, _ := cellOut(t, ev, 3); !strings.Contains(out, "NameError") {
		t.Errorf("after Kernel > Restart the variable is %q, want NameError", out)
	}
	s.e.checkOneKernelAfterRestart(t, second, 10*time.Second)
	b.goOn()
	return second
}

// closeAndHalt checks File > Close and Halt: kq's kernel, the remote
// kernel and its files must go while the server runs on, and the server
// must know no kernel; then the browser driver must end well.
func (s *notebookRun) closeAndHalt() {
	t, e, b := s.t, s.e, s.b
	b.until("closed", time.Minute)
	e.waitNoKQKernel(t, time.Minute)
	e.remoteFilesGoneAtExit(t)
	e.waitRemoteKernels(t, 0, 30*time.Second)
	if ks := s.nb.kernels(t); len(ks) != 0 {
		t.Errorf("the notebook server still runs kernels after Close and Halt: %v", ks)
	}
	b.goOn()
	b.until("", time.Minute)
	if code := b.wait(t, time.Minute); code != 0 {
		t.Errorf("browser driver exit %d", code)
	}
}

// stopServer stops the notebook server and checks that nothing of the
// session's kernels is left and that its log shows no kq error.
func (s *notebookRun) stopServer(kernels []int) {
	t, nb := s.t, s.nb
	nb.stop(t, syscall.SIGTERM, 30*time.Second)
	if kf, _ := filepath.Glob(filepath.Join(nb.runtime, "kernel-*.json")); len(kf) > 0 {
		t.Errorf("connection files left in the notebook's runtime dir: %v", kf)
	}
	s.e.assertClean(kernels, nil)
	// What the person sees in the server's log: a restart and Close and
	// Halt are ordinary ends of a kernel, not errors.
	if log := nb.logText(); strings.Contains(log, "kq: error") {
		t.Errorf("kq kernel reported an error on a restart or Close and Halt (log %s):\n%s", nb.log, grepLines(log, "kq: "))
	}
	t.Logf("screenshots: %s", strings.Join(s.b.shots, " "))
}
