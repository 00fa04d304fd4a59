package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kq-dev/kq/e2e/netns"
	"github.com/kq-dev/kq/e2e/sshdtest"
)

// scenario is one way of reaching the kernel's host: loopback, or
// through a login host whose link from here has added latency.
type scenario struct {
	name      string // "loopback", "hop"
	sshConfig string // names the kernel's host "server"
	binDir    string // holds an "ssh" that adds -F sshConfig, first on PATH
	remoteRT  string // the kernel's runtime dir on the host
	proxy     *proxy // the delaying link to login (hop only)
	profile   string // kq's profile for it
	sshds     []int  // sshd PIDs, whose descendants are ended after a run
	hosts     []*sshdtest.Server
}

// hostStanza is one Host block of an ssh_config.
type hostStanza struct {
	alias, hostName, user, key, jump string
	port                             int
}

// writeSSHConfig writes an ssh_config of the stanzas and a known_hosts
// with the given lines; every host is checked, nothing ever prompts or
// waits for a dead host for more than 10 s, no connection is shared (each
// method pays its own connections).
func writeSSHConfig(dir, name string, hosts []hostStanza, knownHosts []string) string {
	var b strings.Builder
	kh := filepath.Join(dir, name+".known_hosts")
	for _, h := range hosts {
		fmt.Fprintf(&b, "Host %s\n  HostName %s\n  Port %d\n  User %s\n  IdentityFile %s\n  IdentitiesOnly yes\n",
			h.alias, h.hostName, h.port, h.user, h.key)
		if h.jump != "" {
			fmt.Fprintf(&b, "  ProxyJump %s\n", h.jump)
		}
	}
	fmt.Fprintf(&b, "Host *\n  UserKnownHostsFile %s\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n"+
		"  BatchMode yes\n  ConnectTimeout 10\n  UpdateHostKeys no\n  ControlMaster no\n  ControlPath none\n", kh)
	mustWrite(kh, strings.Join(knownHosts, "\n")+"\n")
	path := filepath.Join(dir, name+".ssh_config")
	mustWrite(path, b.String())
	return path
}

func mustWrite(path, content string) {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		panic(err)
	}
}

// sshWrapper makes dir/bin/ssh, which runs /usr/bin/ssh -F config: how
// jupyter_client's tunnel (it runs plain "ssh") gets the scenario's
// config, as it would get ~/.ssh/config. It also ignores SIGHUP, which
// OpenSSH then leaves ignored: jupyter_client runs "ssh -f" on a pexpect
// pty, and when that ssh forks to the background its parent, the pty's
// session leader, exits and the kernel hangs the child up before it has
// left the session; without this, most of the five tunnels die at once
// here (a race of jupyter_client's, not the benchmark's to measure).
func sshWrapper(dir, config string) string {
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o700); err != nil {
		panic(err)
	}
	script := fmt.Sprintf("#!/bin/sh\ntrap '' HUP\nexec %s -F %s \"$@\"\n", sshdtest.SSHPath, config)
	if err := os.WriteFile(filepath.Join(bin, "ssh"), []byte(script), 0o700); err != nil {
		panic(err)
	}
	return bin
}

// loopback is an sshd on 127.0.0.1: the host is this machine.
func loopback(t *runner, dir string) *scenario {
	return loopbackNamed(t, dir, "loopback", "lo", sshdtest.Options{})
}

// scaleLoopback is the scale mode's sshd on 127.0.0.1, with OpenSSH's
// default MaxStartups (10:30:100: beyond 10 unauthenticated connections
// it drops 30% of new ones, rising to all at 100), where sshdtest's
// default (100) would let 50 sessions in without a drop.
func scaleLoopback(t *runner, dir string) *scenario {
	return loopbackNamed(t, dir, "scale", "scale", sshdtest.Options{ExtraConfig: []string{"MaxStartups 10:30:100"}})
}

// loopbackNamed is an sshd on 127.0.0.1 started with opts, as scenario
// name; short names its files.
func loopbackNamed(t *runner, dir, name, short string, opts sshdtest.Options) *scenario {
	srv := sshdtest.Start(t, opts)
	sc := &scenario{name: name, remoteRT: filepath.Join(dir, short+"-remote-rt"), profile: "bench-" + name,
		sshds: []int{srv.PID}, hosts: []*sshdtest.Server{srv}}
	sc.sshConfig = writeSSHConfig(dir, name, []hostStanza{{alias: "server", hostName: srv.Host, port: srv.Port,
		user: srv.User, key: srv.ClientKey}}, []string{srv.KnownHostsPattern() + " " + srv.HostKeyLine})
	sc.binDir = sshWrapper(filepath.Join(dir, short), sc.sshConfig)
	return sc
}

// hop is a login host and a server, each in a network namespace of its
// own; the client reaches login only, through a proxy that adds rtt to
// every round trip, and server only through login (ProxyJump).
func hop(t *runner, dir string, rtt time.Duration) *scenario {
	tp := netns.New(t)
	login, server := tp.Host("login"), tp.Host("server")
	_, loginAddr := tp.Link("", login)
	_, serverAddr := tp.Link(login, server)
	loginSSHD := sshdtest.Start(t, sshdtest.Options{Netns: login, ListenAddr: loginAddr, Port: 2222})
	serverSSHD := sshdtest.Start(t, sshdtest.Options{Netns: server, ListenAddr: serverAddr, Port: 2222})
	px := startProxy(t, loginSSHD.Addr, rtt/2)
	sc := &scenario{name: "hop", remoteRT: filepath.Join(dir, "hop-remote-rt"), proxy: px, profile: "bench-hop",
		sshds: []int{loginSSHD.PID, serverSSHD.PID}, hosts: []*sshdtest.Server{loginSSHD, serverSSHD}}
	sc.sshConfig = writeSSHConfig(dir, "hop", []hostStanza{
		{alias: "login", hostName: "127.0.0.1", port: px.port(), user: loginSSHD.User, key: loginSSHD.ClientKey},
		{alias: "server", hostName: serverAddr, port: 2222, user: serverSSHD.User, key: serverSSHD.ClientKey, jump: "login"},
	}, []string{
		fmt.Sprintf("[127.0.0.1]:%d %s", px.port(), loginSSHD.HostKeyLine),
		serverSSHD.KnownHostsPattern() + " " + serverSSHD.HostKeyLine,
	})
	sc.binDir = sshWrapper(filepath.Join(dir, "hop"), sc.sshConfig)
	return sc
}
