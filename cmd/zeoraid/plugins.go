package main

import (
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/plugins/host"
	"github.com/zeoraid/zeoraid/stack"
)

// pluginImporter is the %import handler of serve, validate, types and
// copy: `%import NAME` loads the plugin zeoraid-plugin-NAME and registers
// its section types. log (nil: none) receives the plugins' own lines.
func pluginImporter(log logrus.FieldLogger) stack.ImportHandler {
	return host.New(log, host.Options{}).Import
}

// loadAllPlugins registers the section types of every plugin found (the
// ones an %import would load), for `zeoraid types`; a plugin that cannot
// be loaded is reported on w.
func loadAllPlugins(configDir string, w io.Writer) {
	h := host.New(nil, host.Options{})
	for _, f := range host.List(configDir) {
		if f.ShadowedBy != "" {
			continue
		}
		if err := h.Load(f.Path); err != nil {
			fmt.Fprintf(w, "zeoraid: plugin %s: %v\n", f.Path, err)
		}
	}
}

func runPlugins(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("plugins", flag.ContinueOnError)
	fs.SetOutput(stderr)
	conf := fs.String("C", "", "also search the directory of this configuration file")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: zeoraid plugins [-C zeo.conf]\nLists the plugin executables (%sNAME) that %%import NAME finds, where,\nin search order ($%s, the configuration's directory, zeoraid's\ndirectory, $PATH), with each one's protocol version and section types.\n", host.Prefix, host.EnvPath)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	dir := ""
	if *conf != "" {
		dir = filepath.Dir(*conf)
	}
	fmt.Fprintf(stdout, "searched: %s\n", strings.Join(host.SearchDirs(dir), ":"))
	found := host.List(dir)
	if len(found) == 0 {
		fmt.Fprintln(stdout, "no plugins found")
		return 0
	}
	status := 0
	for _, f := range found {
		if f.ShadowedBy != "" {
			fmt.Fprintf(stdout, "%s  %s  (shadowed by %s)\n", f.Name, f.Path, f.ShadowedBy)
			continue
		}
		d, err := host.Describe(f.Path, nil)
		if err != nil {
			fmt.Fprintf(stdout, "%s  %s  error: %v\n", f.Name, f.Path, err)
			status = 1
			continue
		}
		var types []string
		for _, m := range d.Modules {
			types = append(types, "<"+m.Type+">")
		}
		fmt.Fprintf(stdout, "%s  %s  protocol %d  %s\n", f.Name, f.Path, d.Major, strings.Join(types, " "))
	}
	return status
}
