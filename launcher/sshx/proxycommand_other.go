//go:build !unix

package sshx

import (
	"os"
	"os/exec"
)

// ownProcessGroup does nothing where there are no POSIX process groups.
func ownProcessGroup(*exec.Cmd) {}

// signalGroup ends p; without POSIX signals there is no gentler way.
func signalGroup(p *os.Process, _ bool) { _ = p.Kill() }
