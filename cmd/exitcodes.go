package cmd

import "strconv"

// exitCodeDoc documents one of the Exit constants of root.go: TestExitCodesDocumented
// fails for a constant that is missing here, so "kq help exit-codes" and
// docs/exit-codes.md always list them all.
type exitCodeDoc struct {
	name    string // the constant's name in root.go
	code    int
	meaning string
}

// exitCodeDocs is every exit code kq itself chooses, in order.
var exitCodeDocs = []exitCodeDoc{
	{"ExitOK", ExitOK, "Success: the command did what was asked (a session whose frontend exited 0)."},
	{"ExitError", ExitError, "Any other error, such as a host that cannot be reached or a remote command that failed."},
	{"ExitUsage", ExitUsage, "Usage or configuration error: a bad flag or argument, an unknown profile, a config file that does not parse or has an unknown key or a wrong type, a frontend that is not installed."},
	{"ExitAuth", ExitAuth, "Authentication failed, or needed a prompt where kq may not ask (no terminal, `BatchMode yes`, `kq kernel`)."},
	{"ExitHostKey", ExitHostKey, "The host key is unknown and was not accepted, or it changed, or it is revoked."},
	{"ExitForward", ExitForward, "Port forwarding failed, for example under `AllowTcpForwarding no`."},
	{"ExitKernel", ExitKernel, "The kernel died, failed to start, wrote an unusable connection file, or was gone after a reconnect."},
	{"ExitInterrupted", ExitInterrupted, "Interrupted: Ctrl-C before the frontend ran, SIGTERM or SIGHUP."},
}

// exitCodesHelp is the text of "kq help exit-codes".
func exitCodesHelp() helpDoc {
	t := &docTable{head: []string{"code", "meaning"}}
	t.rows = append(t.rows, []string{"frontend's", "The frontend ran: kq exits with the frontend's own code (128+N when signal N ended it)."})
	for _, e := range exitCodeDocs {
		t.rows = append(t.rows, []string{strconv.Itoa(e.code), e.meaning})
	}
	return helpDoc{
		{para: "When a session's frontend ran, kq's exit code is the frontend's. Otherwise kq chooses one of these, so scripts can tell a refused host key from a dead kernel:"},
		{table: t},
	}
}
