package main

import (
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

func runTypes(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("types", flag.ContinueOnError)
	fs.SetOutput(stderr)
	conf := fs.String("C", "", "also load the plugins in the directory of this configuration file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	// Plugins' section types are listed with the builtins.
	dir := ""
	if *conf != "" {
		dir = filepath.Dir(*conf)
	}
	loadAllPlugins(dir, stderr)
	for _, m := range stack.Modules() {
		fmt.Fprintf(stdout, "<%s>", m.Type)
		if len(m.Aliases) > 0 {
			fmt.Fprintf(stdout, " (also <%s>)", strings.Join(m.Aliases, ">, <"))
		}
		fmt.Fprintln(stdout)
		if m.Doc != "" {
			fmt.Fprintf(stdout, "  %s\n", m.Doc)
		}
		if m.Children {
			fmt.Fprintln(stdout, "  contains storage sections (its children)")
		}
		if m.Options != nil {
			printKeys(stdout, zconfig.Describe(m.Options), "  ")
		}
		fmt.Fprintln(stdout)
	}
	return 0
}

func printKeys(w io.Writer, docs []zconfig.KeyDoc, indent string) {
	for _, k := range docs {
		var attrs []string
		attrs = append(attrs, k.Type)
		if k.Required {
			attrs = append(attrs, "required")
		}
		if k.Multi {
			attrs = append(attrs, "multikey")
		}
		if k.Default != "" {
			attrs = append(attrs, "default "+k.Default)
		}
		name := k.Name
		if k.Section {
			name = "<" + k.Name + ">"
		}
		fmt.Fprintf(w, "%s%-28s %s\n", indent, name, strings.Join(attrs, ", "))
		if k.Doc != "" {
			fmt.Fprintf(w, "%s    %s\n", indent, k.Doc)
		}
	}
}
