package bench

import (
	"context"
	"math"
	"net"
	"os"
	"testing"
	"time"
)

// The echo floor answers the raw load generator, serial and pipelined,
// and the load generator counts every reply of a burst.
func TestEchoServerAndRawLoads(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewEchoServer(l, 200)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.Serve() }()
	defer func() {
		l.Close()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	for _, depth := range []int{1, 16} {
		p, err := RawLoads(context.Background(), LoadOptions{Addr: l.Addr().String(), Conns: 2, Depth: depth, Pid: os.Getpid()}, "echo", 200*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if p.Ops == 0 || p.Ops%depth != 0 || p.P50 <= 0 {
			t.Fatalf("depth %d: %+v", depth, p)
		}
	}
}

// CPUTime and RSS read this process's own figures from /proc.
func TestProcFigures(t *testing.T) {
	deadline := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(deadline) { // burn at least one clock tick
	}
	cpu, err := CPUTime(os.Getpid())
	if err != nil || cpu <= 0 {
		t.Fatalf("CPUTime: %v, %v", cpu, err)
	}
	rss, err := RSS(os.Getpid())
	if err != nil || rss < 1<<20 {
		t.Fatalf("RSS: %d, %v", rss, err)
	}
	if _, err := CPUTime(-1); err == nil {
		t.Fatal("CPUTime of no process succeeded")
	}
}

// A goal is met on the side the row says, and never without a reference.
func TestRowGoals(t *testing.T) {
	for _, c := range []struct {
		row  Row
		want bool
	}{
		{Row{Value: 1.2, Ref: 1, Goal: 1.3, AtMost: true}, true},
		{Row{Value: 1.4, Ref: 1, Goal: 1.3, AtMost: true}, false},
		{Row{Value: 0.6, Ref: 1, Goal: 0.5}, true},
		{Row{Value: 0.4, Ref: 1, Goal: 0.5}, false},
		{Row{Value: 1, Ref: 0, Goal: 0.5}, false},
		{Row{Value: 1, Ref: 3}, true},
	} {
		if got := c.row.Met(); got != c.want {
			t.Errorf("%+v: Met %v, want %v", c.row, got, c.want)
		}
	}
	if q := (Row{Value: 1}).Ratio(); !math.IsNaN(q) {
		t.Errorf("ratio without a reference: %v", q)
	}
}
