package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/zeoraid/zeoraid/cmd/zeoraid/internal/bench"
)

func runBench(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o bench.Options
	fs.StringVar(&o.Addr, "a", "", "benchmark the ZEO server at this address (host:port or unix socket path)")
	fs.StringVar(&o.Storage, "storage", "1", "storage name to register with")
	fs.IntVar(&o.Conns, "c", 4, "concurrent connections")
	fs.IntVar(&o.Objects, "objects", 1000, "objects created before the load phase")
	fs.IntVar(&o.ObjectSize, "size", 200, "bytes per object record")
	fs.DurationVar(&o.Duration, "d", 5e9, "duration of each phase")
	compare := fs.Bool("compare", false, "start Python runzeo and zeoraid on the same kind of storage and print both with ratios")
	kind := fs.String("kind", "mapping", "with -compare: the storage both servers serve: mapping or file")
	python := fs.String("python", ".venv/bin/python", "with -compare: the Python that has ZEO installed")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: zeoraid bench -a ADDRESS [options]\n       zeoraid bench -compare [-kind mapping|file] [options]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if (o.Addr == "") == !*compare || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o.Progress = stderr
	if !*compare {
		res, err := bench.Run(ctx, o)
		if err != nil {
			fmt.Fprintf(stderr, "zeoraid bench: %v\n", err)
			return 1
		}
		for _, p := range res.Phases {
			fmt.Fprintf(stdout, "%-11s %8d ops %10.0f op/s  p50 %v  p99 %v  errors %d\n", p.Name, p.Ops, p.PerSecond(), p.P50, p.P99, p.Errors)
		}
		return 0
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "zeoraid bench: %v\n", err)
		return 1
	}
	results := map[string]bench.Result{}
	for _, name := range []string{"runzeo", "zeoraid"} {
		dir, err := os.MkdirTemp("", "zeoraid-bench-"+name)
		if err != nil {
			fmt.Fprintf(stderr, "zeoraid bench: %v\n", err)
			return 1
		}
		defer os.RemoveAll(dir)
		storage, err := bench.StorageConfig(*kind, dir)
		if err != nil {
			fmt.Fprintf(stderr, "zeoraid bench: %v\n", err)
			return 2
		}
		var srv *bench.Server
		if name == "runzeo" {
			py, _ := filepath.Abs(*python)
			srv, err = bench.StartRunzeo(ctx, py, storage, dir)
		} else {
			srv, err = bench.StartZeoraid(ctx, exe, storage, dir)
		}
		if err != nil {
			fmt.Fprintf(stderr, "zeoraid bench: %v\n", err)
			return 1
		}
		fmt.Fprintf(stderr, "%s (%s storage) at %s:\n", name, *kind, srv.Addr)
		o.Addr = srv.Addr
		res, err := bench.Run(ctx, o)
		srv.Stop()
		if err != nil {
			fmt.Fprintf(stderr, "zeoraid bench: %s: %v\n", name, err)
			return 1
		}
		results[name] = res
	}
	bench.PrintComparison(stdout, results["runzeo"], results["zeoraid"])
	return 0
}
