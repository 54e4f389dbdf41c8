package main

import (
	"bytes"
	"fmt"
	"io"

	"github.com/zeoraid/zeoraid/builtin/filestorage"
)

const fsUsage = `usage: zeoraid fs check PATH...
       zeoraid fs dump PATH
Operator tools for a Data.fs at rest (stop the server or use a copy).
  check  verify each file as ZODB's fstest.py does, and also that every
         backpointer resolves to a record of the same object; prints a
         summary, or the first problem with its byte offset, and exits 1
         if any file has a problem
  dump   print one line per transaction (offset, tid, time, status,
         length, user, description) and one per data record (offset, oid,
         tid, previous revision, data length or backpointer)`

// runFS is `zeoraid fs`: the check and dump subcommands on Data.fs files.
func runFS(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		fmt.Fprintln(stdout, fsUsage)
		return 0
	}
	if len(args) < 2 {
		fmt.Fprintln(stderr, fsUsage)
		return 2
	}
	switch args[0] {
	case "check":
		status := 0
		for _, path := range args[1:] {
			// Check writes the summary, or the positioned error, which
			// goes to stderr.
			var out bytes.Buffer
			err := filestorage.Check(path, &out)
			w := stdout
			if err != nil {
				w, status = stderr, 1
			}
			w.Write(out.Bytes())
		}
		return status
	case "dump":
		if len(args) != 2 {
			fmt.Fprintln(stderr, fsUsage)
			return 2
		}
		if err := filestorage.Dump(args[1], stdout); err != nil {
			fmt.Fprintf(stderr, "zeoraid fs dump: %v\n", err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "zeoraid fs: unknown subcommand %q\n%s\n", args[0], fsUsage)
	return 2
}
