// Command postlist is the mailing-list server for Postfix and its admin
// command line. See `postlist --help`.
package main

import (
	"os"

	"postlist/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
