package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Example is what "kq config init" writes: every setting, commented, and
// two profiles kq accepts as they are (TestExampleLoads holds it to that).
const Example = `# kq's config file (kq config init wrote it; kq help config explains every key).
# Precedence, highest first: a flag, KQ_* in the environment, the profile, defaults:.
# Hosts, users, ports, keys and jump hosts come from your ssh config (as ssh -G
# sees them), so a profile usually needs only host:.

defaults:
  # How long a kernel outlives a kq that vanished (laptop closed, link cut).
  linger: 5m
  # The local frontend; {kernel} lets it own the kernel (interrupt, restart).
  # Shortcuts: qtconsole, console. {connection_file} gives it a file instead.
  # frontend: jupyter qtconsole --kernel {kernel}
  # keep: false             # leave the kernel running when the session ends
  # keepalive: 15s          # default: ssh config's ServerAliveInterval, else built in
  # keepalive_count: 3
  # warm: 1                 # keep a spare kernel started on the host (sessions given a connection file)
  # warm_code: import numpy # run by every kernel as it starts, so a spare has its imports done

profiles:
  # kq server-gpu
  server-gpu:
    host: gpu.example.org         # an ssh config alias or [user@]host[:port]
    # kernel: python3 -m ipykernel_launcher   # kq appends -f FILE
    # workdir: ~/project
    # env:
    #   CUDA_VISIBLE_DEVICES: "0"
    # runtime_dir: ~/.local/share/jupyter/runtime   # default: asks jupyter on the host

  # kq cluster-node: a compute node reached through a login host
  cluster-node:
    host: alice@node17
    jump: alice@login.example.org  # like ssh -J; "none" ignores ssh config's ProxyJump
    kernel: ~/venvs/torch/bin/python -m ipykernel_launcher
    # kernel_ip: 127.0.0.1          # where the kernel listens, as seen from the host
    # ssh_config: ~/.ssh/config-cluster

  # kq slurm-gpu: a kernel in a batch job on a compute node, submitted on the login node
  # slurm-gpu:
  #   host: alice@login.example.org
  #   scheduler: slurm
  #   queue_timeout: 30m            # give up on a job still queued (default: wait)
  #   slurm:
  #     time: "2:00:00"             # required: the job's time limit
  #     partition: gpu
  #     gres: gpu:1                 # or gpus: 1
  #     cpus: "8"
  #     mem: 32G
  #     account: myproject
  #     qos: normal
  #     constraint: a100
  #     extra: [--exclusive]
`

// ErrExists is returned by Init when a config file is already there.
var ErrExists = errors.New("config file exists")

// Init writes Example to path (0600, its directory 0700 when made), and
// never replaces a file that is there.
func Init(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return &Error{File: path, Msg: fmt.Sprintf("cannot make its directory: %v", unwrapPathError(err)), Err: err}
	}
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return &Error{File: path, Msg: "already exists; not overwritten", Err: ErrExists,
			HintText: "edit it, or move it away and run kq config init again"}
	}
	if err != nil {
		return &Error{File: path, Msg: fmt.Sprintf("cannot create: %v", unwrapPathError(err)), Err: err}
	}
	if _, err := fh.WriteString(Example); err != nil {
		fh.Close()
		os.Remove(path)
		return &Error{File: path, Msg: fmt.Sprintf("cannot write: %v", err), Err: err}
	}
	return fh.Close()
}
