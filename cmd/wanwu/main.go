// Command wanwu is the one binary of the wanwu IoT platform: it runs the hub
// (and later the edge) and carries the tools around them. The program lives
// in internal/cli; main only hands it the process's arguments and streams.
package main

import (
	"os"

	"github.com/wanwu-iot/wanwu/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
