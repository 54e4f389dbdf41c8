package filestorage

import (
	"slices"
	"sort"

	"github.com/zeoraid/zeoraid/stack"
)

// recentTxns is how many transactions findTxn walks back from the end
// before it uses the tid list: undo and restore mostly name recent ones.
const recentTxns = 64

// txnPos is where the transaction with a tid starts.
type txnPos struct {
	tid stack.Tid
	pos int64
}

// txnIndex is the list of every transaction's position, built on first
// use (so a storage that never needs it pays nothing) for finding a
// transaction by tid: undo, and restore with prevTxn, which RAID recovery
// and copyTransactionsFrom call once per record. It is built and read
// under Storage.txnsMu by callers holding Storage.mu shared, and extended
// by Finish and reset by pack's swap, which hold Storage.mu exclusively.
type txnIndex struct {
	list  []txnPos // every transaction, ascending tid
	built bool
	last  stack.Tid
}

// added records a transaction that Finish published. The caller holds
// Storage.mu exclusively.
func (l *txnIndex) added(tid stack.Tid, pos int64) {
	if l.built {
		if tid <= l.last {
			*l = txnIndex{} // out of order: rebuild on next use
			return
		}
		l.list = append(l.list, txnPos{tid, pos})
		l.last = tid
	}
}

// reset forgets the list (the file was replaced by a pack). The caller
// holds Storage.mu exclusively.
func (l *txnIndex) reset() { *l = txnIndex{} }

// findTxn returns the header of the committed transaction with tid. It
// looks the tid up in the transaction list; before that list exists, it
// first walks back a few transactions from the end, as Python does, and
// builds the list (one forward pass over the transaction headers) only
// for an older tid. The caller holds s.mu shared.
func (s *Storage) findTxn(tid stack.Tid) (txnHeader, bool, error) {
	s.txnsMu.Lock()
	built := s.txns.built
	s.txnsMu.Unlock()
	p := s.pos
	for i := 0; !built && i < recentTxns && p > int64(len(magicFS30)); i++ {
		h, err := s.rd.prevTxn(p)
		if err != nil {
			return h, false, err
		}
		if h.tid == tid {
			return h, true, nil
		}
		if h.tid < tid {
			return h, false, nil
		}
		p = h.pos
	}
	if p <= int64(len(magicFS30)) {
		return txnHeader{}, false, nil
	}
	txns, err := s.txnList()
	if err != nil {
		return txnHeader{}, false, err
	}
	i := sort.Search(len(txns), func(i int) bool { return txns[i].tid >= tid })
	if i == len(txns) || txns[i].tid != tid {
		return txnHeader{}, false, nil
	}
	h, err := s.rd.txnHeader(txns[i].pos)
	return h, err == nil, err
}

// txnList returns every committed transaction in ascending tid order,
// building the list if needed. The caller holds s.mu shared.
func (s *Storage) txnList() ([]txnPos, error) {
	s.txnsMu.Lock()
	defer s.txnsMu.Unlock()
	l := &s.txns
	if l.built {
		return l.list, nil
	}
	var txns []txnPos
	for p := int64(len(magicFS30)); p < s.pos; {
		h, err := s.rd.txnHeader(p)
		if err != nil {
			return nil, err
		}
		txns = append(txns, txnPos{h.tid, h.pos})
		p = h.next()
	}
	// A file with a time-stamp reduction (Python warns and goes on) is
	// still searchable once sorted.
	slices.SortStableFunc(txns, func(a, b txnPos) int {
		switch {
		case a.tid < b.tid:
			return -1
		case a.tid > b.tid:
			return 1
		}
		return 0
	})
	l.list, l.built = txns, true
	if len(txns) > 0 {
		l.last = txns[len(txns)-1].tid
	}
	return txns, nil
}
