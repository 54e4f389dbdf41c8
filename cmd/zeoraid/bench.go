package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
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
	python := fs.String("python", ".venv/bin/python", "with -compare and -report: the Python that has ZEO installed")
	report := fs.Bool("report", false, "measure every figure of docs/performance.md, each against its reference, in one run")
	only := fs.String("only", "", "with -report: a comma-separated list of sections to run (floor, python, raid, recovery, memory)")
	recoveryMB := fs.Int("recovery-mb", 200, "with -report: size of the Data.fs recovered (0: skip)")
	idleConns := fs.Int("idle-conns", 1000, "with -report: idle connections of the memory figure (0: skip)")
	memObjects := fs.Int("memory-objects", 1000000, "with -report: objects of the Data.fs whose open server's memory is reported (0: skip)")
	serveExe := fs.String("zeoraid", "", "with -report: the zeoraid binary whose serve is measured (default: this one), to compare builds")
	serveEcho := fs.Bool("serve-echo", false, "serve the echo floor on a loopback port, printing its address (what -report starts)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: zeoraid bench -a ADDRESS [options]\n       zeoraid bench -compare [-kind mapping|file] [options]\n       zeoraid bench -report [-kind mapping|file] [-only SECTIONS] [options]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *serveEcho {
		if err := bench.ServeEcho(stdout, o.ObjectSize); err != nil {
			fmt.Fprintf(stderr, "zeoraid bench: %v\n", err)
			return 1
		}
		return 0
	}
	modes := 0
	for _, m := range []bool{o.Addr != "", *compare, *report} {
		if m {
			modes++
		}
	}
	if modes != 1 || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o.Progress = stderr
	if *report {
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintf(stderr, "zeoraid bench: %v\n", err)
			return 1
		}
		py, _ := filepath.Abs(*python)
		ro := bench.ReportOptions{
			Exe: exe, Serve: *serveExe, Python: py, Kind: *kind, Duration: o.Duration, Conns: o.Conns,
			Objects: o.Objects, ObjectSize: o.ObjectSize, RecoveryMB: *recoveryMB,
			IdleConns: *idleConns, MemoryObjects: *memObjects, Progress: stderr,
		}
		if *only != "" {
			ro.Only = strings.Split(*only, ",")
		}
		rep, err := bench.RunReport(ctx, ro)
		if rep != nil {
			bench.PrintReport(stdout, rep)
		}
		if err != nil {
			fmt.Fprintf(stderr, "zeoraid bench: %v\n", err)
			return 1
		}
		return 0
	}
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
