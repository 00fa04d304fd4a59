// Command kq gives you a Jupyter kernel on a remote machine in one command.
// See the README for profiles and exit codes.
package main

import (
	"os"

	"github.com/kq-dev/kq/cmd"
)

func main() {
	os.Exit(cmd.Main(os.Args[1:]))
}
