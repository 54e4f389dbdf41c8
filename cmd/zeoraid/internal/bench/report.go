package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"strings"
	"time"
)

// ReportOptions describe `zeoraid bench -report`: every figure of
// docs/performance.md in one run, each against a reference measured in
// the same run.
type ReportOptions struct {
	Exe        string        // the zeoraid binary: bench -serve-echo, and serve unless Serve is set
	Serve      string        // the zeoraid binary whose serve is measured, when not Exe (a build to compare)
	Python     string        // the virtualenv's python, with ZODB and ZEO
	Kind       string        // storage of the request-path figures: mapping or file
	Duration   time.Duration // per phase
	Conns      int           // connections of the commit phases
	Objects    int           // objects loads read
	ObjectSize int           // bytes per record
	// RecoveryMB is the size of the Data.fs recovered; 0 skips recovery.
	RecoveryMB int
	// IdleConns is how many idle connections the memory figure opens; 0
	// skips it. MemoryObjects is the size of the Data.fs whose open
	// server's memory is reported; 0 skips it.
	IdleConns, MemoryObjects int
	Dir                      string    // scratch directory (default: a temporary one)
	Progress                 io.Writer // what runs, as it runs; nil: quiet
	Only                     []string  // sections to run (floor, python, raid, recovery, memory); nil: all
}

// Row is one figure: zeoraid's value, the reference's, their ratio and
// the goal on the ratio.
type Row struct {
	Section string
	Figure  string
	Unit    string // of Value and Ref
	Value   float64
	RefName string
	Ref     float64
	Goal    float64 // bound on Value/Ref; 0: reported only
	AtMost  bool    // the goal is an upper bound (else a lower one)
	Err     error   // the figure could not be measured
	Comment string
}

// Ratio is Value/Ref (NaN without a reference).
func (r Row) Ratio() float64 {
	if r.Ref == 0 {
		return math.NaN()
	}
	return r.Value / r.Ref
}

// Met reports whether the goal is met (true when there is none).
func (r Row) Met() bool {
	if r.Goal == 0 {
		return true
	}
	q := r.Ratio()
	if math.IsNaN(q) || r.Err != nil {
		return false
	}
	if r.AtMost {
		return q <= r.Goal
	}
	return q >= r.Goal
}

func (r Row) goal() string {
	switch {
	case r.Goal == 0:
		return ""
	case r.AtMost:
		return fmt.Sprintf("<= %.2fx", r.Goal)
	}
	return fmt.Sprintf(">= %.2fx", r.Goal)
}

// Report is the outcome of a report run.
type Report struct {
	Rows  []Row
	Load  string // the load average at the start and the end
	Start time.Time
}

// PrintReport writes the rows as a table.
func PrintReport(w io.Writer, rep *Report) {
	fmt.Fprintf(w, "zeoraid bench -report, %s; load average %s\n", rep.Start.Format(time.RFC3339), rep.Load)
	fmt.Fprintf(w, "%-62s %14s %24s %8s %9s %s\n", "figure", "zeoraid", "reference", "ratio", "goal", "")
	section := ""
	for _, r := range rep.Rows {
		if r.Section != section {
			section = r.Section
			fmt.Fprintf(w, "[%s]\n", section)
		}
		if r.Err != nil {
			fmt.Fprintf(w, "  %-60s not measured: %v\n", r.Figure, r.Err)
			continue
		}
		ratio, verdict := "", ""
		if q := r.Ratio(); !math.IsNaN(q) {
			ratio = fmt.Sprintf("%.2fx", q)
		}
		if r.Goal != 0 {
			verdict = "met"
			if !r.Met() {
				verdict = "NOT MET"
			}
		}
		ref := fmt.Sprintf("%s %s", r.RefName, formatValue(r.Ref, r.Unit))
		line := fmt.Sprintf("  %-60s %14s %24s %8s %9s %s", r.Figure, formatValue(r.Value, r.Unit), ref, ratio, r.goal(), verdict)
		if r.Comment != "" {
			line += "  (" + r.Comment + ")"
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
}

func formatValue(v float64, unit string) string {
	switch unit {
	case "us":
		return fmt.Sprintf("%.1f µs", v)
	case "MiB":
		return fmt.Sprintf("%.1f MiB", v)
	case "MB/s":
		return fmt.Sprintf("%.1f MB/s", v)
	}
	return fmt.Sprintf("%.0f %s", v, unit)
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// reporter runs the sections of a report.
type reporter struct {
	o   ReportOptions
	rep *Report
}

// RunReport measures every figure; a figure that fails is reported with
// its error and the others go on.
func RunReport(ctx context.Context, o ReportOptions) (*Report, error) {
	if o.Duration <= 0 {
		o.Duration = 3 * time.Second
	}
	if o.Conns <= 0 {
		o.Conns = 4
	}
	if o.Objects <= 0 {
		o.Objects = 1000
	}
	if o.ObjectSize <= 0 {
		o.ObjectSize = 200
	}
	if o.Kind == "" {
		o.Kind = "mapping"
	}
	if o.Serve == "" {
		o.Serve = o.Exe
	}
	if o.Dir == "" {
		d, err := os.MkdirTemp("", "zeoraid-bench-report")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		o.Dir = d
	}
	r := &reporter{o: o, rep: &Report{Start: time.Now(), Load: loadAverage()}}
	sections := []struct {
		name string
		run  func(context.Context) error
	}{
		{"floor", r.floor},
		{"python", r.python},
		{"raid", r.raid},
		{"recovery", r.recovery},
		{"memory", r.memory},
	}
	for _, s := range sections {
		if len(o.Only) > 0 && !contains(o.Only, s.name) {
			continue
		}
		r.progress("== %s", s.name)
		if err := s.run(ctx); err != nil {
			if ctx.Err() != nil {
				return r.rep, ctx.Err()
			}
			r.rep.Rows = append(r.rep.Rows, Row{Section: s.name, Figure: s.name, Err: err})
		}
	}
	r.rep.Load += " → " + loadAverage()
	return r.rep, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (r *reporter) progress(format string, args ...any) {
	if r.o.Progress != nil {
		fmt.Fprintf(r.o.Progress, format+"\n", args...)
	}
}

func (r *reporter) add(row Row) {
	r.rep.Rows = append(r.rep.Rows, row)
	if row.Err != nil {
		r.progress("  %s: %v", row.Figure, row.Err)
	}
}

// dir returns a new scratch directory under the report's.
func (r *reporter) dir(name string) (string, error) {
	return os.MkdirTemp(r.o.Dir, name)
}

// kindSection is the storage section of the request-path figures.
func (r *reporter) kindSection() string {
	if r.o.Kind == "file" {
		return oneFileStorage
	}
	return "<mappingstorage 1>\n</mappingstorage>\n"
}

// start starts zeoraid or runzeo (which) on section, named which, and
// returns it with its directory.
func (r *reporter) start(ctx context.Context, which, section string) (*Server, string, error) {
	s, err := r.server(ctx, which, which, section)
	if err != nil {
		return nil, "", err
	}
	return s, s.dir, nil
}

// serverFigures are the request-path measurements of one server.
type serverFigures struct {
	serial, pipelined Phase
	paced             Phase  // 2 connections pausing between requests
	res               Result // commits (load too), through zeoproto.Client
	pyLoad, pyCommit  Phase
}

// measureServer runs the request-path phases and the Python clients'
// phases against a started server.
func (r *reporter) measureServer(ctx context.Context, s *Server, dir string, python bool) (serverFigures, error) {
	var f serverFigures
	var err error
	r.progress("  %s at %s: setup and commits", s.Name, s.Addr)
	f.res, err = run(ctx, Options{Addr: s.Addr, Conns: r.o.Conns, Objects: r.o.Objects, ObjectSize: r.o.ObjectSize,
		Duration: r.o.Duration, Pid: s.Pid(), Progress: r.o.Progress}, []string{PhaseSmall, PhaseLarge})
	if err != nil {
		return f, err
	}
	lo := LoadOptions{Addr: s.Addr, Oids: f.res.Oids, Conns: 1, Depth: 1, Pid: s.Pid()}
	if f.serial, err = RawLoads(ctx, lo, "serial", r.o.Duration); err != nil {
		return f, err
	}
	r.progress("  serial loads: %d, p50 %v, server CPU %v/op", f.serial.Ops, f.serial.P50, f.serial.CPUPerOp())
	lo.Conns, lo.Depth = 8, 16
	if f.pipelined, err = RawLoads(ctx, lo, "pipelined", r.o.Duration); err != nil {
		return f, err
	}
	lo.Conns, lo.Depth, lo.Pace = 2, 1, pace
	if f.paced, err = RawLoads(ctx, lo, "paced", r.o.Duration); err != nil {
		return f, err
	}
	r.progress("  pipelined loads: %.0f/s, server CPU %v/op", f.pipelined.PerSecond(), f.pipelined.CPUPerOp())
	if !python {
		return f, nil
	}
	if f.pyLoad, err = PythonPhase(ctx, r.o.Python, s.Addr, s.Pid(), f.res.Oids, "load", 2, r.o.Duration, dir); err != nil {
		return f, err
	}
	r.progress("  2 Python clients: %d loads, server CPU %v/op", f.pyLoad.Ops, f.pyLoad.CPUPerOp())
	if f.pyCommit, err = PythonPhase(ctx, r.o.Python, s.Addr, s.Pid(), nil, "commit", 2, r.o.Duration, dir); err != nil {
		return f, err
	}
	r.progress("  2 Python clients: %d commits, server CPU %v/op", f.pyCommit.Ops, f.pyCommit.CPUPerOp())
	return f, nil
}

// floor measures the echo server, zeoraid and runzeo on the same phases:
// the request-path figures against the floor, and the Python clients'
// against runzeo.
func (r *reporter) floor(ctx context.Context) error {
	echo, err := StartEcho(ctx, r.o.Exe, r.o.ObjectSize)
	if err != nil {
		return err
	}
	r.progress("  echo server at %s", echo.Addr)
	lo := LoadOptions{Addr: echo.Addr, Conns: 1, Depth: 1, Pid: echo.Pid()}
	var echoF serverFigures
	echoF.serial, err = RawLoads(ctx, lo, "serial", r.o.Duration)
	if err == nil {
		lo.Conns, lo.Depth = 8, 16
		echoF.pipelined, err = RawLoads(ctx, lo, "pipelined", r.o.Duration)
	}
	if err == nil {
		lo.Conns, lo.Depth, lo.Pace = 2, 1, pace
		echoF.paced, err = RawLoads(ctx, lo, "paced", r.o.Duration)
	}
	echo.Stop()
	if err != nil {
		return err
	}
	r.progress("  echo: serial p50 %v, CPU %v/op; pipelined %.0f/s; paced CPU %v/op",
		echoF.serial.P50, echoF.serial.CPUPerOp(), echoF.pipelined.PerSecond(), echoF.paced.CPUPerOp())
	return r.floorServers(ctx, echoF)
}

// pace is the pause of the paced loads: about what a Python client
// spends between two cache misses, so that the server sleeps and is
// woken for every request.
const pace = 300 * time.Microsecond

func (r *reporter) floorServers(ctx context.Context, echoF serverFigures) error {
	eSerial, ePipe := echoF.serial, echoF.pipelined
	zs, zdir, err := r.start(ctx, "zeoraid", r.kindSection())
	if err != nil {
		return err
	}
	zf, err := r.measureServer(ctx, zs, zdir, true)
	zs.Stop()
	if err != nil {
		return fmt.Errorf("zeoraid: %w", err)
	}
	ps, pdir, err := r.start(ctx, "runzeo", r.kindSection())
	if err != nil {
		return err
	}
	pf, err := r.measureServer(ctx, ps, pdir, true)
	ps.Stop()
	if err != nil {
		return fmt.Errorf("runzeo: %w", err)
	}
	sec := "request path (" + r.o.Kind + " storage)"
	r.add(Row{Section: sec, Figure: "server CPU per load, 1 connection, 1 outstanding", Unit: "us",
		Value: us(zf.serial.CPUPerOp()), RefName: "echo", Ref: us(eSerial.CPUPerOp()), Goal: 1.3, AtMost: true})
	r.add(Row{Section: sec, Figure: "serial load p50", Unit: "us",
		Value: us(zf.serial.P50), RefName: "echo", Ref: us(eSerial.P50), Goal: 1.5, AtMost: true})
	r.add(Row{Section: sec, Figure: "pipelined loads/s, 8 connections x 16 outstanding", Unit: "op/s",
		Value: zf.pipelined.PerSecond(), RefName: "echo", Ref: ePipe.PerSecond(), Goal: 0.5})
	r.add(Row{Section: sec, Figure: "server CPU per load, pipelined", Unit: "us",
		Value: us(zf.pipelined.CPUPerOp()), RefName: "echo", Ref: us(ePipe.CPUPerOp()), AtMost: true})
	r.add(Row{Section: sec, Figure: "server CPU per load, 2 connections pausing 300µs", Unit: "us",
		Value: us(zf.paced.CPUPerOp()), RefName: "echo", Ref: us(echoF.paced.CPUPerOp()), AtMost: true})
	r.add(Row{Section: sec, Figure: "server CPU per load, 1 connection, 1 outstanding", Unit: "us",
		Value: us(zf.serial.CPUPerOp()), RefName: "runzeo", Ref: us(pf.serial.CPUPerOp()), AtMost: true})
	r.add(Row{Section: sec, Figure: "server CPU per load, 2 connections pausing 300µs", Unit: "us",
		Value: us(zf.paced.CPUPerOp()), RefName: "runzeo", Ref: us(pf.paced.CPUPerOp()), AtMost: true})
	r.add(Row{Section: sec, Figure: "serial load p50", Unit: "us",
		Value: us(zf.serial.P50), RefName: "runzeo", Ref: us(pf.serial.P50), AtMost: true})
	r.add(Row{Section: sec, Figure: "pipelined loads/s, 8 connections x 16 outstanding", Unit: "op/s",
		Value: zf.pipelined.PerSecond(), RefName: "runzeo", Ref: pf.pipelined.PerSecond()})
	for _, c := range []struct {
		phase, figure string
		objects       float64
	}{{PhaseSmall, "commits, 1 object (objects/s)", 1}, {PhaseLarge, "commits, 100 objects (objects/s)", 100}} {
		z, p := zf.res.Phase(c.phase), pf.res.Phase(c.phase)
		r.add(Row{Section: sec, Figure: fmt.Sprintf("%s, %d connections", c.figure, r.o.Conns), Unit: "obj/s",
			Value: z.PerSecond() * c.objects, RefName: "runzeo", Ref: p.PerSecond() * c.objects})
		r.add(Row{Section: sec, Figure: "server CPU per " + c.phase + " transaction", Unit: "us",
			Value: us(z.CPUPerOp()), RefName: "runzeo", Ref: us(p.CPUPerOp()), AtMost: true})
	}
	sec = "2 real Python clients (" + r.o.Kind + " storage)"
	r.add(Row{Section: sec, Figure: "server CPU per load (cache misses)", Unit: "us",
		Value: us(zf.pyLoad.CPUPerOp()), RefName: "runzeo", Ref: us(pf.pyLoad.CPUPerOp()), Goal: 0.25, AtMost: true})
	r.add(Row{Section: sec, Figure: "server CPU per 1-object commit", Unit: "us",
		Value: us(zf.pyCommit.CPUPerOp()), RefName: "runzeo", Ref: us(pf.pyCommit.CPUPerOp()), Goal: 0.5, AtMost: true})
	r.add(Row{Section: sec, Figure: "loads/s", Unit: "op/s",
		Value: zf.pyLoad.PerSecond(), RefName: "runzeo", Ref: pf.pyLoad.PerSecond()})
	r.add(Row{Section: sec, Figure: "commits/s", Unit: "op/s",
		Value: zf.pyCommit.PerSecond(), RefName: "runzeo", Ref: pf.pyCommit.PerSecond()})
	return nil
}

// python is measured with the floor (the same servers); the section
// exists so that -only python runs it alone.
func (r *reporter) python(ctx context.Context) error {
	if len(r.o.Only) == 0 || contains(r.o.Only, "floor") {
		return nil
	}
	var figs [2]serverFigures
	for i, which := range []string{"zeoraid", "runzeo"} {
		s, dir, err := r.start(ctx, which, r.kindSection())
		if err != nil {
			return err
		}
		res, err := run(ctx, Options{Addr: s.Addr, Conns: 1, Objects: r.o.Objects, ObjectSize: r.o.ObjectSize, Duration: r.o.Duration}, nil)
		if err == nil {
			figs[i].pyLoad, err = PythonPhase(ctx, r.o.Python, s.Addr, s.Pid(), res.Oids, "load", 2, r.o.Duration, dir)
		}
		if err == nil {
			figs[i].pyCommit, err = PythonPhase(ctx, r.o.Python, s.Addr, s.Pid(), nil, "commit", 2, r.o.Duration, dir)
		}
		s.Stop()
		if err != nil {
			return err
		}
	}
	sec := "2 real Python clients (" + r.o.Kind + " storage)"
	r.add(Row{Section: sec, Figure: "server CPU per load (cache misses)", Unit: "us",
		Value: us(figs[0].pyLoad.CPUPerOp()), RefName: "runzeo", Ref: us(figs[1].pyLoad.CPUPerOp()), Goal: 0.25, AtMost: true})
	r.add(Row{Section: sec, Figure: "server CPU per 1-object commit", Unit: "us",
		Value: us(figs[0].pyCommit.CPUPerOp()), RefName: "runzeo", Ref: us(figs[1].pyCommit.CPUPerOp()), Goal: 0.5, AtMost: true})
	return nil
}

// StartEcho starts `zeoraid bench -serve-echo` (the binary at exe) and
// returns it once it listens.
func StartEcho(ctx context.Context, exe string, size int) (*Server, error) {
	cmd := exec.CommandContext(ctx, exe, "bench", "-serve-echo", "-size", fmt.Sprint(size))
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("echo server: %w", err)
	}
	s := &Server{Name: "echo", cmd: cmd}
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		s.Stop()
		return nil, fmt.Errorf("echo server did not report its address: %w", err)
	}
	s.Addr = strings.TrimSpace(addr)
	return s, nil
}

// loadAverage is /proc/loadavg's first three numbers: how busy the
// machine was, since only ratios measured in the same run compare.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// sizeOf is the size of the file at path, in bytes (0 if it cannot be read).
func sizeOf(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
