// Command zeoraid is a ZEO server whose storages are a tree of nodes built
// from an ordinary zeo.conf. Subcommands: serve, validate, types, plugins, bench, ctl, pack, check, copy, fs, version.
package main

import (
	"fmt"
	"io"
	"os"

	_ "github.com/zeoraid/zeoraid/builtin/all"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// command is one subcommand: its one-line summary and its entry point,
// which gets the arguments after the subcommand's name and returns the
// process exit status.
type command struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

func commands() map[string]command {
	return map[string]command{
		"serve":    {"run the ZEO server (runzeo's -C, -a, -f, -t, --pid-file)", runServe},
		"validate": {"check a zeo.conf without opening anything", runValidate},
		"types":    {"list every storage section type with its keys", runTypes},
		"plugins":  {"list the storage plugins %import finds, and where", runPlugins},
		"bench":    {"measure a ZEO server, or compare runzeo and zeoraid", runBench},
		"ctl":      {"manage a RAID storage of a running server (status, details, recover, disable, verify, info)", runCtl},
		"pack":     {"pack storages of running ZEO servers over the ZEO port (zeopack's options)", runPack},
		"check":    {"compare the histories of a RAID's children on a running server (raid_verify)", runCheck},
		"copy":     {"copy every transaction from one storage into another (zodbconvert for every type)", runCopy},
		"fs":       {"check or dump a Data.fs (fs check PATH..., fs dump PATH)", runFS},
		"version":  {"print the version", runVersion},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr, cmds)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "zeoraid: unknown command %q\n", args[0])
		usage(stderr, cmds)
		return 2
	}
	return c.run(args[1:], stdout, stderr)
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "usage: zeoraid COMMAND [options]")
	fmt.Fprintln(w, "commands:")
	for _, name := range []string{"serve", "validate", "types", "plugins", "bench", "ctl", "check", "fs", "version"} {
		fmt.Fprintf(w, "  %-9s %s\n", name, cmds[name].summary)
	}
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintf(stdout, "zeoraid %s\n", version)
	return 0
}
