package stack

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"time"
)

// recordsHash hashes a transaction's data records: oid and data of each,
// in oid order. Backpointers (DataTxn) are left out: two storages may
// store the same data inline or by reference.
func recordsHash(recs []DataRecord) []byte {
	sorted := slices.Clone(recs)
	slices.SortStableFunc(sorted, func(a, b DataRecord) int {
		switch {
		case a.Oid < b.Oid:
			return -1
		case a.Oid > b.Oid:
			return 1
		}
		return 0
	})
	h := sha256.New()
	var n [8]byte
	for _, r := range sorted {
		h.Write(r.Oid.Bytes())
		if r.Data == nil {
			h.Write([]byte{0})
			continue
		}
		h.Write([]byte{1})
		binary.BigEndian.PutUint64(n[:], uint64(len(r.Data)))
		h.Write(n[:])
		h.Write(r.Data)
	}
	return h.Sum(nil)
}

// TransactionHash is a transaction's signature: its metadata and records hash.
func TransactionHash(t TxnRecord) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s %d %d:%s %d:%s %d:%s ", t.Tid, normalStatus(t.Status), len(t.User), t.User,
		len(t.Description), t.Description, len(t.Extension), t.Extension)
	h.Write(recordsHash(t.Records))
	return hex.EncodeToString(h.Sum(nil))
}

// normalStatus normalises the status byte (0 means ' ').
func normalStatus(b byte) byte {
	if b == 0 {
		return ' '
	}
	return b
}

// CompareTransactions names the first field in which a and b differ, or "".
func CompareTransactions(a, b TxnRecord) string {
	switch {
	case a.Tid != b.Tid:
		return fmt.Sprintf("tid %s against %s", a.Tid, b.Tid)
	case normalStatus(a.Status) != normalStatus(b.Status):
		return fmt.Sprintf("status %q against %q", normalStatus(a.Status), normalStatus(b.Status))
	case !bytes.Equal(a.User, b.User):
		return fmt.Sprintf("user %q against %q", a.User, b.User)
	case !bytes.Equal(a.Description, b.Description):
		return fmt.Sprintf("description %q against %q", a.Description, b.Description)
	case !bytes.Equal(a.Extension, b.Extension):
		return "extension"
	case !bytes.Equal(recordsHash(a.Records), recordsHash(b.Records)):
		return "data records"
	}
	return ""
}

// Difference is the first place where two histories differ.
type Difference struct {
	Tid  Tid    // the first tid concerned
	What string // what differs there
}

// CompareResult is the outcome of Compare.
type CompareResult struct {
	Transactions int         // transactions found equal
	Last         Tid         // the last equal tid
	Diff         *Difference // nil when the histories are equal
}

// CompareHistories walks the transaction iterators of a and b side by
// side over [start, stop] (0: unbounded) and reports the first transaction
// that differs in tid, status, user, description, extension or data
// records: the comparison of `zeoraid check` and `zeoraid copy --verify`,
// and of a RAID's recovery. It only reads, so it can run while the storages serve;
// bound stop by a tid both have committed to compare a moving pair. Each
// iterator call is bounded by callTimeout (0: only by ctx).
func CompareHistories(ctx context.Context, a, b Storage, start, stop Tid, callTimeout time.Duration) (CompareResult, error) {
	return CompareHistoriesPaced(ctx, a, b, start, stop, callTimeout, nil)
}

// CompareHistoriesPaced is CompareHistories with pace, when not nil,
// called after each pair of equal transactions with the count so far: it
// may wait (a throttled background check), and its error ends the
// comparison.
func CompareHistoriesPaced(ctx context.Context, a, b Storage, start, stop Tid, callTimeout time.Duration, pace func(ctx context.Context, n int) error) (CompareResult, error) {
	var res CompareResult
	ia, ok := AsIterator(a)
	ib, ok2 := AsIterator(b)
	if !ok || !ok2 {
		return res, fmt.Errorf("compare: both storages must support iteration: %w", ErrNotSupported)
	}
	bound := func() (context.Context, context.CancelFunc) {
		if callTimeout <= 0 {
			return context.WithCancel(ctx)
		}
		return context.WithTimeout(ctx, callTimeout)
	}
	ta, err := ia.Iterate(ctx, start, stop)
	if err != nil {
		return res, fmt.Errorf("iterate the first storage: %w", err)
	}
	defer ta.Close()
	tb, err := ib.Iterate(ctx, start, stop)
	if err != nil {
		return res, fmt.Errorf("iterate the second storage: %w", err)
	}
	defer tb.Close()
	next := func(ti TxnIterator, which string) (TxnRecord, bool, error) {
		cctx, cancel := bound()
		defer cancel()
		rec, ok, err := ti.Next(cctx)
		if err != nil {
			err = fmt.Errorf("iterate the %s storage: %w", which, err)
		}
		return rec, ok, err
	}
	for {
		ra, okA, err := next(ta, "first")
		if err != nil {
			return res, err
		}
		rb, okB, err := next(tb, "second")
		if err != nil {
			return res, err
		}
		switch {
		case !okA && !okB:
			return res, nil
		case !okA:
			res.Diff = &Difference{Tid: rb.Tid, What: "transaction only in the second"}
			return res, nil
		case !okB:
			res.Diff = &Difference{Tid: ra.Tid, What: "transaction only in the first"}
			return res, nil
		}
		if what := CompareTransactions(ra, rb); what != "" {
			res.Diff = &Difference{Tid: min(ra.Tid, rb.Tid), What: what}
			return res, nil
		}
		res.Transactions++
		res.Last = ra.Tid
		if pace != nil {
			if err := pace(ctx, res.Transactions); err != nil {
				return res, err
			}
		}
	}
}
