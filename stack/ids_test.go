package stack

import (
	"testing"
	"time"
)

// The tid of the golden frames, worked out in docs/filestorage.md §8.
func TestTidFromTimeSpecExample(t *testing.T) {
	tm := time.Date(2024, 5, 17, 13, 45, 30, 500_000_000, time.UTC)
	got := TidFromTime(tm)
	want := Tid(0x03f8a4b982222222)
	if got != want {
		t.Fatalf("TidFromTime(%v) = %s, want %s", tm, got, want)
	}
	back := got.Time()
	if d := back.Sub(tm); d < -time.Microsecond || d > time.Microsecond {
		t.Fatalf("Time() = %v, want %v", back, tm)
	}
}

func TestTidRoundTripsOverYears(t *testing.T) {
	for _, tm := range []time.Time{
		time.Date(1999, 12, 31, 23, 59, 59, 999_000_000, time.UTC),
		time.Date(2000, 2, 29, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 11, 25, 1, 2, 3, 400_000_000, time.UTC),
	} {
		got := TidFromTime(tm).Time()
		if d := got.Sub(tm); d < -time.Microsecond || d > time.Microsecond {
			t.Errorf("round trip of %v gave %v", tm, got)
		}
	}
}

func TestNewTidStrictlyIncreases(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	last := TidFromTime(now)
	// The same instant, and a clock that went back, still advance.
	for _, at := range []time.Time{now, now.Add(-time.Hour), now.Add(-24 * time.Hour)} {
		next := NewTid(last, at)
		if next <= last {
			t.Fatalf("NewTid(%s, %v) = %s, not after the last tid", last, at, next)
		}
		last = next
	}
	if got := NewTid(last, now.Add(time.Hour)); got != TidFromTime(now.Add(time.Hour)) {
		t.Fatalf("a later clock must give its own timestamp, got %s", got)
	}
	// +1 carries into the minute word.
	if got := NewTid(Tid(0x03f8a4b9ffffffff), time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)); got != Tid(0x03f8a4ba00000000) {
		t.Fatalf("carry: got %s", got)
	}
}

func TestIdBytes(t *testing.T) {
	o := Oid(0x0102030405060708)
	b := o.Bytes()
	if string(b) != "\x01\x02\x03\x04\x05\x06\x07\x08" {
		t.Fatalf("Bytes = %x", b)
	}
	back, err := OidFromBytes(b)
	if err != nil || back != o {
		t.Fatalf("OidFromBytes = %s, %v", back, err)
	}
	if _, err := OidFromBytes(b[:7]); err == nil {
		t.Fatal("a 7-byte oid must be refused")
	}
	if _, err := TidFromBytes(nil); err == nil {
		t.Fatal("an empty tid must be refused")
	}
	if Tid(0x040d3da77c5bb966).Hex() != "040d3da77c5bb966" {
		t.Fatal("Hex")
	}
	if MaxTid.String() != "0x7fffffffffffffff" {
		t.Fatal("MaxTid")
	}
}
