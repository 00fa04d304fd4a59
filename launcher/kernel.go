package launcher

import (
	"github.com/kq-dev/kq/launcher/remote"
	"github.com/kq-dev/kq/profiles"
)

// newKernelSpec is the spec a profile asks for. A literal kernel_ip is
// passed to the kernel as --ip; "auto" leaves the address to the kernel.
func newKernelSpec(p profiles.Profile, id string) remote.KernelSpec {
	k := remote.KernelSpec{Command: p.Kernel, RuntimeDir: p.RuntimeDir, Workdir: p.Workdir, Env: p.Env,
		ID: id, Linger: p.Linger, Keep: p.Keep, Warm: p.Warm > 0, WarmCode: p.WarmCode}
	if p.KernelIP != "auto" {
		k.IP = p.KernelIP
	}
	return k
}

// forwardHost is where forwards go, as seen from the host: a literal
// kernelIP, the connection file's ip under "auto", else the host's
// loopback (also for a kernel bound to every address).
func forwardHost(kernelIP, fileIP string) string {
	switch {
	case kernelIP != "" && kernelIP != "auto":
		return kernelIP
	case kernelIP == "auto" && fileIP != "" && fileIP != "0.0.0.0":
		return fileIP
	}
	return "127.0.0.1"
}
