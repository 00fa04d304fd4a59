package sshx

import (
	"runtime"
	"slices"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/cpu"
)

// Issue 13: when the ssh config names no Ciphers, kq offers the cipher
// that is fastest on this machine first; the server agrees on the
// client's first choice that it also allows, so this sets the session's
// cipher, and with it the forwarding throughput.

// openSSHDefaultCiphers is the Ciphers list that ssh -G prints when the
// config names none (OpenSSH 6.9 to 9.x): kq cannot tell it from a list
// that a config spells out in full, and treats both as "no preference".
var openSSHDefaultCiphers = []string{
	"chacha20-poly1305@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr",
	"aes128-gcm@openssh.com", "aes256-gcm@openssh.com",
}

// hasAESHardware reports whether AES-GCM runs in hardware here (Go's
// AES-GCM is then several times faster than its ChaCha20-Poly1305; on a
// CPU without it, ChaCha20-Poly1305 is the faster one).
func hasAESHardware() bool {
	switch runtime.GOARCH {
	case "amd64", "386":
		return cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ
	case "arm64":
		return cpu.ARM64.HasAES && cpu.ARM64.HasPMULL
	case "s390x":
		return cpu.S390X.HasAES && cpu.S390X.HasAESGCM
	case "ppc64", "ppc64le":
		return true // POWER8 and later have vector AES, which Go uses
	}
	return false
}

// fastCiphers is the preference for a host whose config names no
// Ciphers: the allowed set of OpenSSH's defaults, fastest first here.
func fastCiphers(aesHW bool) []string {
	if aesHW {
		return []string{ssh.CipherAES128GCM, ssh.CipherAES256GCM, ssh.CipherChaCha20Poly1305,
			ssh.CipherAES128CTR, ssh.CipherAES192CTR, ssh.CipherAES256CTR}
	}
	return []string{ssh.CipherChaCha20Poly1305, ssh.CipherAES128GCM, ssh.CipherAES256GCM,
		ssh.CipherAES128CTR, ssh.CipherAES192CTR, ssh.CipherAES256CTR}
}

// cipherPreference is the cipher list kq offers for the configured one:
// the fastest order when nothing was configured (nil, or OpenSSH's
// default list as ssh -G prints it), the configuration's own otherwise.
func cipherPreference(configured []string, aesHW bool) []string {
	if configured == nil || slices.Equal(configured, openSSHDefaultCiphers) {
		return fastCiphers(aesHW)
	}
	return configured
}
