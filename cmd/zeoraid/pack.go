package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

const packUsage = `usage: zeoraid pack [-d DAYS] [-t HH[:MM[:SS]]] [-u PATH[:NAME]]... [-h HOST -p PORT | -p PORT | -U PATH] [-S NAME] [HOST:PORT[:NAME]]...
Packs storages of running ZEO servers (zeoraid or runzeo) over the ZEO port, as
zeopack does: the ordinary pack call, which any client may make; on a RAID
storage every child is packed (refused while a recovery runs).`

// packConnectTimeout is how long pack tries to reach each server, as
// zeopack waits for its client to connect.
var packConnectTimeout = 60 * time.Second

// packTarget is one storage to pack.
type packTarget struct {
	network, address, storage string
}

func (p packTarget) String() string {
	return fmt.Sprintf("storage %q at %s", p.storage, p.address)
}

func runPack(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pack", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, packUsage)
		fs.PrintDefaults()
	}
	days := fs.Int("d", 0, "pack objects that are older than this number of days")
	at := fs.String("t", "", "time of day to pack to, HH[:MM[:SS]] (default: now)")
	var unix multiFlag
	fs.Var(&unix, "u", "a unix socket server to pack, PATH[:NAME] (repeatable)")
	host := fs.String("h", "", "with -p and -S: the host to connect to")
	port := fs.Int("p", 0, "with -h (or alone: this host's name) and -S: the port to connect to")
	name := fs.String("S", "1", "with -h and -p, or -U: the storage name")
	unixOne := fs.String("U", "", "with -S: a unix socket to connect to")
	progress := fs.Bool("progress", false, "show the elapsed time while packing even when stderr is not a terminal")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "Error:\n"+format+"\n", a...)
		return 1
	}
	t, err := packTimeOf(time.Now(), *at, *days)
	if err != nil {
		return fail("%v", err)
	}
	var targets []packTarget
	switch {
	case *host != "":
		if *port == 0 {
			return fail("If host (-h) is specified then a port (-p) must be specified as well.")
		}
		targets = append(targets, packTarget{"tcp", net.JoinHostPort(*host, strconv.Itoa(*port)), *name})
	case *port != 0:
		h, err := os.Hostname()
		if err != nil {
			return fail("-p without -h: %v", err)
		}
		targets = append(targets, packTarget{"tcp", net.JoinHostPort(h, strconv.Itoa(*port)), *name})
	}
	if *unixOne != "" {
		targets = append(targets, packTarget{"unix", *unixOne, *name})
	}
	for _, s := range fs.Args() {
		pt, err := parsePackServer(s)
		if err != nil {
			return fail("%v", err)
		}
		targets = append(targets, pt)
	}
	for _, s := range unix {
		path, n, _ := strings.Cut(s, ":")
		if strings.Count(s, ":") > 1 {
			return fail("Invalid server specification: %q", s)
		}
		if n == "" {
			n = "1"
		}
		targets = append(targets, packTarget{"unix", path, n})
	}
	if len(targets) == 0 {
		if len(args) == 0 {
			fs.Usage()
			return 2
		}
		return fail("No servers specified.")
	}
	showProgress := *progress || isTerminal(stderr)
	found := false
	for _, pt := range targets {
		reached, err := packOne(pt, t, showProgress, stdout, stderr)
		found = found || reached
		if err != nil {
			return fail("Error packing %s: %v", pt, err)
		}
	}
	if !found {
		return fail("Cannot connect to any of the configured ZEO servers.")
	}
	return 0
}

// packTimeOf is zeopack's pack time: now, or today at -t's time of day
// (local time), minus days.
func packTimeOf(now time.Time, at string, days int) (time.Time, error) {
	t := now
	if at != "" {
		parts := strings.Split(at, ":")
		if len(parts) > 3 {
			return time.Time{}, fmt.Errorf("Invalid time value: %q", at)
		}
		var hms [3]int
		for i, p := range parts {
			n, err := strconv.Atoi(p)
			if err != nil {
				return time.Time{}, fmt.Errorf("Invalid time value: %q", at)
			}
			hms[i] = n
		}
		t = time.Date(now.Year(), now.Month(), now.Day(), hms[0], hms[1], hms[2], 0, time.Local)
	}
	return t.Add(-time.Duration(days) * 24 * time.Hour), nil
}

// parsePackServer reads zeopack's positional HOST:PORT[:NAME].
func parsePackServer(s string) (packTarget, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 2 && len(parts) != 3 {
		return packTarget{}, fmt.Errorf("Invalid server specification: %q", s)
	}
	if _, err := strconv.Atoi(parts[1]); err != nil {
		return packTarget{}, fmt.Errorf("Invalid port in server specification: %q", s)
	}
	name := "1"
	if len(parts) == 3 {
		name = parts[2]
	}
	return packTarget{"tcp", net.JoinHostPort(parts[0], parts[1]), name}, nil
}

// packOne packs one storage and reports whether its server was reached.
// Connecting is retried for packConnectTimeout; a server that cannot be
// reached is reported and skipped, as zeopack does.
func packOne(pt packTarget, t time.Time, showProgress bool, stdout, stderr io.Writer) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), packConnectTimeout)
	defer cancel()
	var c *zeoproto.Client
	for {
		var err error
		c, err = zeoproto.Dial(ctx, pt.network, pt.address, zeoproto.ClientOptions{})
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(stderr, "Couldn't connect to: %s: %v\n", pt, err)
			return false, nil
		case <-time.After(time.Second):
		}
	}
	defer c.Close()
	if _, err := c.Register(ctx, pt.storage, true); err != nil {
		return true, fmt.Errorf("register: %w", err)
	}
	before, _ := storageSize(ctx, c)
	done := make(chan struct{})
	if showProgress {
		go packProgress(pt, done, stderr)
	}
	start := time.Now()
	secs := float64(t.UnixNano()) / 1e9
	_, err := c.Call(context.Background(), "pack", secs, true)
	close(done)
	if err != nil {
		return true, err
	}
	after, _ := storageSize(context.Background(), c)
	fmt.Fprintf(stdout, "packed %s to %s in %s; size %s -> %s\n", pt, t.Format(time.RFC3339),
		time.Since(start).Round(time.Millisecond), byteSize(before), byteSize(after))
	return true, nil
}

// storageSize is get_info's size.
func storageSize(ctx context.Context, c *zeoproto.Client) (int64, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	info, err := c.Call(cctx, "get_info")
	if err != nil {
		return 0, err
	}
	d, _ := info.(zeoproto.Dict)
	v, _ := d.Get("size")
	n, _ := zeoproto.AsInt(v)
	return n, nil
}

// packProgress shows the time a pack has taken until done closes: the
// pack call tells nothing until it ends.
func packProgress(pt packTarget, done <-chan struct{}, stderr io.Writer) {
	bar := progressbar.NewOptions(-1,
		progressbar.OptionSetWriter(stderr),
		progressbar.OptionSetDescription("packing "+pt.String()),
		progressbar.OptionSpinnerType(14),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionThrottle(200*time.Millisecond),
	)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			_ = bar.Finish()
			fmt.Fprintln(stderr)
			return
		case <-tick.C:
			_ = bar.Add(1)
		}
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
