// Command orphanhost opens a <testmapping> section of the plugin given as
// its argument, prints the plugin's pid and waits to be killed: the
// orphan test kills it with SIGKILL and watches the plugin exit by itself.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/zeoraid/zeoraid/plugins/host"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

func main() {
	root, err := zconfig.Parse("orphan.conf", []byte("<testmapping>\n</testmapping>\n"))
	if err != nil {
		panic(err)
	}
	s, err := host.Open(context.Background(), os.Args[1], &stack.Node{Path: "main", Type: "testmapping"}, root.Sections[0], host.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(s.PID())
	select {}
}
