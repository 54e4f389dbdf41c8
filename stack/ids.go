// Package stack is zeoraid's domain: object and transaction ids, the Storage
// contract every backend implements, its typed errors, the registry of section
// types, building a storage tree from configuration, mounts, the resource pool
// and the invalidation notifier.
//
// It imports nothing of zeoraid's builtins or plugins; they import it.
package stack

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"time"
)

// Oid is a ZODB object id: eight bytes, big-endian, shown as 0x%016x.
// The root object is oid 0.
type Oid uint64

// Tid is a ZODB transaction id in the TimeStamp format (docs/filestorage.md §8):
// the high word counts minutes since 1900 (every month 31 days), the low word
// the fraction of the minute in units of 60/2^32 seconds. Tid 0 (z64) means
// "no transaction".
type Tid uint64

// MaxTid is the largest tid ZODB uses (0x7fffffffffffffff); ClientStorage.load
// asks for the revision before it.
const MaxTid Tid = math.MaxInt64

// Bytes returns the oid as ZODB's 8-byte string (p64).
func (o Oid) Bytes() []byte { return binary.BigEndian.AppendUint64(nil, uint64(o)) }

// String formats the oid as 0x followed by 16 hex digits.
func (o Oid) String() string { return fmt.Sprintf("0x%016x", uint64(o)) }

// Bytes returns the tid as ZODB's 8-byte string (p64).
func (t Tid) Bytes() []byte { return binary.BigEndian.AppendUint64(nil, uint64(t)) }

// String formats the tid as 0x followed by 16 hex digits: the one form
// tids take in logs and messages. ZODB's tid_repr drops leading zero
// bytes, which only tids from before 1931 have, so for real tids the two
// agree.
func (t Tid) String() string { return fmt.Sprintf("0x%016x", uint64(t)) }

// Hex returns the 16 lowercase hex digits ZEO's server_status shows for a tid.
func (t Tid) Hex() string { return hex.EncodeToString(t.Bytes()) }

// OidFromBytes reads an 8-byte oid (u64); any other length is an error.
func OidFromBytes(b []byte) (Oid, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("oid must be 8 bytes, got %d", len(b))
	}
	return Oid(binary.BigEndian.Uint64(b)), nil
}

// TidFromBytes reads an 8-byte tid (u64); any other length is an error.
func TidFromBytes(b []byte) (Tid, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("tid must be 8 bytes, got %d", len(b))
	}
	return Tid(binary.BigEndian.Uint64(b)), nil
}

// TidFromTime encodes t (taken in UTC) as a TimeStamp tid. Sub-minute
// precision is floor(seconds * 2^32 / 60), as Python's TimeStamp computes it.
func TidFromTime(t time.Time) Tid {
	t = t.UTC()
	hi := uint64((((t.Year()-1900)*12+int(t.Month())-1)*31+t.Day()-1)*24+t.Hour())*60 + uint64(t.Minute())
	sec := float64(t.Second()) + float64(t.Nanosecond())/1e9
	lo := uint64(sec * (1 << 32) / 60)
	if lo > math.MaxUint32 {
		lo = math.MaxUint32
	}
	return Tid(hi<<32 | lo)
}

// Time decodes the tid's TimeStamp into UTC wall-clock time. Months of the
// encoding always have 31 days; dates that do not exist normalise as
// time.Date does.
func (t Tid) Time() time.Time {
	hi := uint64(t) >> 32
	lo := uint64(t) & math.MaxUint32
	minute := int(hi % 60)
	hi /= 60
	hour := int(hi % 24)
	hi /= 24
	day := int(hi%31) + 1
	hi /= 31
	month := time.Month(hi%12) + 1
	year := int(hi/12) + 1900
	ns := int64(float64(lo) * 60 / (1 << 32) * 1e9)
	return time.Date(year, month, day, hour, minute, 0, 0, time.UTC).Add(time.Duration(ns))
}

// Seconds is the tid's time as float seconds since the epoch, the "time"
// value of history and undoLog entries.
func (t Tid) Seconds() float64 {
	tm := t.Time()
	return float64(tm.Unix()) + float64(tm.Nanosecond())/1e9
}

// NewTid returns the tid for a commit at now that follows last: the
// TimeStamp of now, or last+1 when the clock has not moved past last. Tids
// handed out this way strictly increase even if the clock goes back.
func NewTid(last Tid, now time.Time) Tid {
	t := TidFromTime(now)
	if t <= last {
		t = last + 1
	}
	return t
}
