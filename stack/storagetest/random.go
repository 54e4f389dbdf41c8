package storagetest

import (
	"fmt"
	"math/rand"
	"sort"
	"testing"

	"github.com/zeoraid/zeoraid/stack"
)

// randomTxns and randomOids size the seeded random history.
const (
	randomTxns = 150
	randomOids = 12
)

// pair is the backend and the oracle driven in lockstep; tids[k] are the
// tids of the k-th committed transaction in each.
type pair struct {
	s    [2]stack.Storage
	tids [2][]stack.Tid
	idx  [2]map[stack.Tid]int
}

// currentSerial is oid's current tid, deletions included (0 if none).
func currentSerial(t *testing.T, s stack.Storage, oid stack.Oid) stack.Tid {
	h, err := s.History(ctxOf(t), oid, 1)
	if isNotFound(err) {
		return 0
	}
	if err != nil {
		t.Fatalf("History(%s): %v", oid, err)
	}
	return h[0].Tid
}

func (p *pair) committed(tb [2]stack.Tid) {
	for i := range p.s {
		p.idx[i][tb[i]] = len(p.tids[i])
		p.tids[i] = append(p.tids[i], tb[i])
	}
}

// index names a tid by its commit position, so the two sides compare.
func (p *pair) index(side int, tid stack.Tid) string {
	if tid == 0 {
		return "none"
	}
	if k, ok := p.idx[side][tid]; ok {
		return fmt.Sprint("txn#", k)
	}
	return "unknown " + tid.String()
}

func testRandomHistory(t *testing.T, h Harness) {
	if h.Oracle == nil {
		t.Fatal("Harness.Oracle is nil: RandomHistory compares with mappingstorage")
	}
	seed := h.Seed
	if seed == 0 {
		seed = 20260101
	}
	rng := rand.New(rand.NewSource(seed))
	p := &pair{s: [2]stack.Storage{open(t, h), h.Oracle(t)}, idx: [2]map[stack.Tid]int{{}, {}}}
	defer p.s[1].Close()
	ctx := ctxOf(t)
	caps := p.s[0].Capabilities()
	var conflicts, deletes, undos int
	for n := 0; n < randomTxns; n++ {
		if caps.Undo && rng.Intn(8) == 0 {
			if p.randomUndo(t, rng) {
				undos++
			}
			continue
		}
		type choice struct {
			oid   stack.Oid
			data  string
			del   bool
			stale bool
		}
		var cs []choice
		for j := 1 + rng.Intn(4); j > 0; j-- {
			cs = append(cs, choice{
				oid:   stack.Oid(rng.Intn(randomOids)),
				data:  fmt.Sprintf("txn %d value %d", n, rng.Intn(1000)),
				del:   caps.Delete && rng.Intn(8) == 0,
				stale: rng.Intn(15) == 0,
			})
		}
		var tb [2]stack.Tid
		var errs [2]error
		for side, s := range p.s {
			var ops []op
			for _, c := range cs {
				serial := currentSerial(t, s, c.oid)
				if c.stale {
					serial = 1
				}
				if c.del && serial == 0 {
					continue
				}
				ops = append(ops, op{oid: c.oid, serial: serial, data: []byte(c.data), del: c.del})
				if c.del && side == 0 {
					deletes++
				}
			}
			tb[side], errs[side] = tryCommit(ctx, s, stack.TxnMeta{Description: []byte(fmt.Sprint("txn ", n))}, ops...)
		}
		if (errs[0] == nil) != (errs[1] == nil) {
			t.Fatalf("txn %d (seed %d): backend error %v, oracle error %v", n, seed, errs[0], errs[1])
		}
		switch {
		case errs[0] == nil:
			p.committed(tb)
		case len(conflictOids(errs[0])) > 0 && len(conflictOids(errs[1])) > 0:
			conflicts++
		default:
			t.Fatalf("txn %d (seed %d): backend error %v, oracle error %v", n, seed, errs[0], errs[1])
		}
	}
	t.Logf("seed %d: %d transactions committed, %d conflicts, %d deletes, %d undos", seed, len(p.tids[0]), conflicts, deletes, undos)
	// The history must exercise what the backend supports, or the
	// comparison proves little.
	if conflicts == 0 || (caps.Delete && deletes == 0) || (caps.Undo && undos == 0) {
		t.Fatalf("seed %d: random history too tame: %d conflicts, %d deletes, %d undos", seed, conflicts, deletes, undos)
	}
	p.compare(t, seed)
}

// randomUndo undoes a random recent transaction on both sides and reports
// whether it succeeded.
func (p *pair) randomUndo(t *testing.T, rng *rand.Rand) bool {
	ctx := ctxOf(t)
	var logs [2][]stack.UndoInfo
	for side, s := range p.s {
		u, ok := stack.AsUndoer(s)
		if !ok {
			t.Fatalf("side %d lost its Undoer", side)
		}
		l, err := u.UndoLog(ctx, 0, -10, nil)
		if err != nil {
			t.Fatal(err)
		}
		logs[side] = l
	}
	if len(logs[0]) != len(logs[1]) {
		t.Fatalf("UndoLog: backend %d entries, oracle %d", len(logs[0]), len(logs[1]))
	}
	if len(logs[0]) == 0 {
		return false
	}
	k := rng.Intn(len(logs[0]))
	var tb [2]stack.Tid
	var errs [2]error
	for side, s := range p.s {
		if got := p.index(side, logs[side][k].Tid); side == 1 && got != p.index(0, logs[0][k].Tid) {
			t.Fatalf("UndoLog entry %d: backend %s, oracle %s", k, p.index(0, logs[0][k].Tid), got)
		}
		_, tb[side], errs[side] = undo(t, s, logs[side][k].ID)
	}
	if (errs[0] == nil) != (errs[1] == nil) {
		t.Fatalf("undo of %s: backend error %v, oracle error %v", p.index(0, logs[0][k].Tid), errs[0], errs[1])
	}
	if errs[0] == nil {
		p.committed(tb)
	}
	return errs[0] == nil
}

// view is what one load shows, with tids turned into commit positions.
func (p *pair) view(t *testing.T, side int, oid stack.Oid, before stack.Tid) string {
	r, err := p.s[side].LoadBefore(ctxOf(t), oid, before)
	switch {
	case isNotFound(err):
		return "not found"
	case err != nil:
		return "error " + err.Error()
	}
	return fmt.Sprintf("%q serial %s next %s", r.Data, p.index(side, r.Serial), p.index(side, r.NextSerial))
}

func (p *pair) compare(t *testing.T, seed int64) {
	ctx := ctxOf(t)
	if len(p.tids[0]) < randomTxns/2 {
		t.Fatalf("only %d of %d random transactions committed", len(p.tids[0]), randomTxns)
	}
	for oid := stack.Oid(0); oid < randomOids; oid++ {
		for k := range p.tids[0] {
			for _, delta := range []stack.Tid{0, 1} {
				b, o := p.view(t, 0, oid, p.tids[0][k]+delta), p.view(t, 1, oid, p.tids[1][k]+delta)
				if b != o {
					t.Fatalf("seed %d: LoadBefore(%s, txn#%d+%d): backend %s, oracle %s", seed, oid, k, delta, b, o)
				}
			}
		}
		if b, o := p.view(t, 0, oid, stack.MaxTid), p.view(t, 1, oid, stack.MaxTid); b != o {
			t.Fatalf("seed %d: current %s: backend %s, oracle %s", seed, oid, b, o)
		}
		var hist [2]string
		for side, s := range p.s {
			hs, err := s.History(ctx, oid, 1000)
			if err != nil && !isNotFound(err) {
				t.Fatal(err)
			}
			for _, e := range hs {
				hist[side] += fmt.Sprintf("%s/%d/%s ", p.index(side, e.Tid), e.Size, e.Description)
			}
		}
		if hist[0] != hist[1] {
			t.Fatalf("seed %d: History(%s): backend %s, oracle %s", seed, oid, hist[0], hist[1])
		}
	}
	if _, ok := stack.AsIterator(p.s[0]); !ok {
		return
	}
	var txns [2][]string
	for side, s := range p.s {
		for _, rec := range iterateAll(t, s, 0, 0) {
			recs := append([]stack.DataRecord(nil), rec.Records...)
			sort.Slice(recs, func(i, j int) bool { return recs[i].Oid < recs[j].Oid })
			line := p.index(side, rec.Tid) + ":"
			for _, r := range recs {
				line += fmt.Sprintf(" %s=%q", r.Oid, r.Data)
			}
			txns[side] = append(txns[side], line)
		}
	}
	if len(txns[0]) != len(txns[1]) {
		t.Fatalf("seed %d: Iterate: backend %d txns, oracle %d", seed, len(txns[0]), len(txns[1]))
	}
	for k := range txns[0] {
		if txns[0][k] != txns[1][k] {
			t.Fatalf("seed %d: Iterate txn %d: backend %s, oracle %s", seed, k, txns[0][k], txns[1][k])
		}
	}
}
