package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

// defaultConfig is the configuration `zeoraid serve` and `zeoraid validate`
// use without -C.
//
//go:embed default.conf
var defaultConfig []byte

// defaultDirs are the directories of the embedded default's two Data.fs
// files. `zeoraid serve` creates them, so that a fresh checkout can run the
// server at once; `zeoraid validate` creates nothing and accepts their
// absence.
var defaultDirs = []string{"var/1", "var/2"}

// loadConfig reads path, or the embedded default when path is empty. It
// reads only: validate relies on it to leave the disk alone.
func loadConfig(path string) (*stack.Config, error) {
	if path == "" {
		root, err := zconfig.Parse("(default zeo.conf)", defaultConfig)
		if err != nil {
			return nil, err
		}
		return stack.DecodeConfig(root)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, err
	}
	return stack.LoadConfig(path)
}

func runValidate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	conf := fs.String("C", "", "configuration file (default: the embedded default)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: zeoraid validate [-C zeo.conf]\nParses, decodes and checks the configuration as serve does, without opening,\ncreating or writing anything; prints every error as file:line:col: message\nand exits 2 if there are any. What validate accepts, serve accepts.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	cfg, err := loadConfig(*conf)
	if cfg != nil {
		// Check the storage sections too, even when the rest has errors,
		// so one run reports everything.
		_, berr := stack.Build(context.Background(), cfg, stack.BuildOptions{DryRun: true, Import: pluginImporter(nil)})
		err = mergeConfigErrors(err, berr)
	}
	var created []string
	if *conf == "" {
		created, err = dropDefaultDirs(err)
	}
	if err != nil {
		printConfigError(stderr, err)
		return 2
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	name := *conf
	if name == "" {
		name = "default configuration"
	}
	fmt.Fprintf(stdout, "%s: ok (%d storage(s))\n", name, len(cfg.Storages))
	if len(created) > 0 {
		fmt.Fprintf(stdout, "note: serve creates %s\n", strings.Join(created, " and "))
	}
	return 0
}

// dropDefaultDirs returns the directories serve creates for the default
// configuration that err says are missing, and err without those errors.
func dropDefaultDirs(err error) ([]string, error) {
	var list zconfig.ErrorList
	if !errors.As(err, &list) {
		return nil, err
	}
	var kept zconfig.ErrorList
	var dirs []string
	for _, e := range list {
		var missing *zconfig.MissingDirError
		if errors.As(e, &missing) && slices.Contains(defaultDirs, missing.Dir) {
			if !slices.Contains(dirs, missing.Dir) {
				dirs = append(dirs, missing.Dir)
			}
			continue
		}
		kept = append(kept, e)
	}
	if len(kept) == 0 {
		return dirs, nil
	}
	return dirs, kept
}

// mergeConfigErrors joins two error lists, sorted by position, without
// repeating an error both found.
func mergeConfigErrors(a, b error) error {
	if a == nil || b == nil {
		if a == nil {
			return b
		}
		return a
	}
	var la, lb zconfig.ErrorList
	if !errors.As(a, &la) || !errors.As(b, &lb) {
		return errors.Join(a, b)
	}
	seen := map[string]bool{}
	var out zconfig.ErrorList
	for _, e := range append(append(zconfig.ErrorList{}, la...), lb...) {
		if !seen[e.Error()] {
			seen[e.Error()] = true
			out = append(out, e)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		pi, pj := out[i].Pos, out[j].Pos
		if pi.File != pj.File {
			return pi.File < pj.File
		}
		if pi.Line != pj.Line {
			return pi.Line < pj.Line
		}
		return pi.Col < pj.Col
	})
	return out
}

// printConfigError prints a zconfig.ErrorList one positioned error per
// line, or any other error as it is.
func printConfigError(w io.Writer, err error) {
	var list zconfig.ErrorList
	if errors.As(err, &list) {
		for _, e := range list {
			fmt.Fprintln(w, e.Error())
		}
		return
	}
	fmt.Fprintln(w, err.Error())
}
