//go:build unix

package sshx

import (
	"os"
	"os/exec"
	"syscall"
)

// ownProcessGroup puts the ProxyCommand in a process group of its own, so
// a terminal's Ctrl-C meant for the frontend does not cut the link.
func ownProcessGroup(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} }

// signalGroup sends SIGTERM (SIGKILL when kill) to p's process group.
func signalGroup(p *os.Process, kill bool) {
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	_ = syscall.Kill(-p.Pid, sig)
}
