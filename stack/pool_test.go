package stack

import (
	"errors"
	"io"
	"testing"
)

type closeCounter struct{ closed *int }

func (c closeCounter) Close() error { *c.closed++; return nil }

func TestPoolSharesAndClosesOnLastRelease(t *testing.T) {
	p := NewPool()
	closed, opened := 0, 0
	open := func() (io.Closer, error) { opened++; return closeCounter{&closed}, nil }
	a, err := p.Acquire("/var/Data.fs", open)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := p.Acquire("/var/Data.fs", open)
	if a != b || opened != 1 || p.Held("/var/Data.fs") != 2 {
		t.Fatalf("second Acquire must share: opened %d, refs %d", opened, p.Held("/var/Data.fs"))
	}
	must(t, p.Release("/var/Data.fs"))
	if closed != 0 {
		t.Fatal("closed while still held")
	}
	must(t, p.Release("/var/Data.fs"))
	if closed != 1 || p.Held("/var/Data.fs") != 0 {
		t.Fatalf("closed %d times after the last release", closed)
	}
	if err := p.Release("/var/Data.fs"); err == nil {
		t.Fatal("releasing what is not held must fail")
	}
	if _, err := p.Acquire("x", func() (io.Closer, error) { return nil, errors.New("locked") }); err == nil || p.Held("x") != 0 {
		t.Fatal("a failed open must not be held")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
