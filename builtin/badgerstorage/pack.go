package badgerstorage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/stack"
)

// packStep bounds the keys one pack step reads or writes while it holds
// the storage's read lock; commits go on between steps.
const packStep = 4096

// keyReclaim is written and dropped again after a pack: dropping a key
// makes Badger flush its memtables, so the deletions pack wrote reach
// the tables that compaction rewrites.
var keyReclaim = []byte{'r'}

// Pack is ZODB's pack: it removes the revisions not needed to read any
// state at or after t (with gc, also those of objects unreachable from
// the root), as mappingstorage's Pack does, then lets Badger reclaim the
// space. It reads the history as of its start and writes its deletions
// in small steps at versions no reader's version is below, so it never
// holds the commit lock: commits made meanwhile are after the pack time
// and untouched. Undo is refused while it runs.
func (s *Storage) Pack(ctx context.Context, t time.Time, gc bool) error {
	if s.opts.ReadOnly {
		return stack.ErrReadOnly
	}
	pt := stack.TidFromTime(t)
	if pt == 0 {
		return &stack.StorageError{Msg: fmt.Sprintf("pack time %s is before 1900", t)}
	}
	if !s.packing.CompareAndSwap(false, true) {
		return &stack.StorageError{Msg: "Already packing"}
	}
	defer s.packing.Store(false)
	var last stack.Tid
	if err := s.view(ctx, func(_ *badger.Txn, l stack.Tid) error { last = l; return nil }); err != nil {
		return s.fail("pack", nil, nil, err)
	}
	pt = min(pt, last)
	if pt == 0 {
		return nil
	}
	gc = gc && s.opts.PackGC
	p := &packer{s: s, ctx: ctx, readTs: last, packTid: pt, gc: gc, removedFrom: map[stack.Tid]int{}}
	p.log = s.log.WithFields(logrus.Fields{"pack_tid": pt.String(), "gc": gc})
	start := time.Now()
	if err := p.run(); err != nil {
		p.log.WithError(err).Error("pack failed")
		return s.fail("pack", nil, &pt, err)
	}
	p.log.WithFields(logrus.Fields{"revisions_removed": p.removed, "objects_removed": p.gone, "took": time.Since(start).Round(time.Millisecond).String()}).Info("packed")
	return nil
}

// packObj is what pack knows of one object after its first pass.
type packObj struct {
	oid      stack.Oid
	keep     stack.Tid // its newest revision at or before the pack time, 0 if none
	keepData bool      // that revision has data (is no deletion)
	older    int       // its revisions at or before the pack time
	later    bool      // it has revisions after the pack time
}

type packer struct {
	s       *Storage
	ctx     context.Context
	log     logrus.FieldLogger
	readTs  stack.Tid // the history pack works on: the last commit at its start
	packTid stack.Tid
	gc      bool

	objs        []packObj // by oid
	reach       []bool    // parallel to objs; only with gc
	roots       []stack.Oid
	ops         []packOp
	blobs       []string // blob files of removed revisions
	removedFrom map[stack.Tid]int
	removed     int
	gone        int
}

// packOp is one write of pack: a deletion, or a rewrite of a value, of
// an entry written by transaction tid.
type packOp struct {
	key   []byte
	tid   stack.Tid
	value []byte // nil: delete
}

// version is the Badger version pack writes an entry of transaction tid
// at: one above the entry's own, so that Badger's compaction sees both
// and counts the value it drops for the value log garbage collector; at
// the entry's own version (replacing it) only for the last transaction,
// as nothing may be written above the read version.
func (p *packer) version(tid stack.Tid) uint64 {
	if tid < p.readTs {
		return uint64(tid) + 1
	}
	return uint64(tid)
}

func (p *packer) run() error {
	if err := p.survey(); err != nil {
		return err
	}
	if p.gc {
		if err := p.mark(); err != nil {
			return err
		}
	}
	removing := 0
	for i, o := range p.objs {
		if p.live(i) {
			removing += o.older - 1
		} else {
			removing += o.older
		}
	}
	if removing == 0 {
		p.log.Info("pack freed nothing")
		return nil
	}
	if err := p.sweep(); err != nil {
		return err
	}
	if err := p.packTxns(); err != nil {
		return err
	}
	p.s.count.Add(-int64(p.gone))
	if err := p.s.writeMeta(map[string]uint64{string(keyCount): uint64(max(p.s.count.Load(), 0))}); err != nil {
		return err
	}
	return p.s.reclaim(p.log)
}

// live reports whether object i keeps its revision at the pack time.
func (p *packer) live(i int) bool {
	o := p.objs[i]
	return o.keep != 0 && o.keepData && (!p.gc || p.reach[i])
}

// scan calls each for every key with prefix from `from` on, as of the
// pack's start, packStep keys per read lock; after each step it writes
// the operations collected.
func (p *packer) scan(prefix, from []byte, each func(item *badger.Item) error) error {
	for from != nil {
		var next []byte
		err := p.s.at(p.ctx, p.readTs, func(txn *badger.Txn, _ stack.Tid) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
			defer it.Close()
			n := 0
			for it.Seek(from); it.Valid(); it.Next() {
				if n == packStep {
					next = it.Item().KeyCopy(nil)
					return nil
				}
				if err := each(it.Item()); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err == nil {
			err = p.flush()
		}
		if err != nil {
			return err
		}
		from = next
	}
	return nil
}

// survey is the first pass over every object: what each has at the pack
// time, and (with gc) the references of every later revision.
func (p *packer) survey() error {
	return p.scan([]byte{famObject}, []byte{famObject}, func(item *badger.Item) error {
		oid, tid, err := parseObjectKey(item.Key())
		if err != nil {
			return err
		}
		if len(p.objs) == 0 || p.objs[len(p.objs)-1].oid != oid {
			p.objs = append(p.objs, packObj{oid: oid})
		}
		o := &p.objs[len(p.objs)-1]
		if tid > p.packTid {
			o.later = true
			if !p.gc {
				return nil
			}
			r, _, err := itemRevision(item)
			if err != nil {
				return err
			}
			refs, err := stack.Refs(r.data)
			if err != nil {
				return fmt.Errorf("references of object %s at %s: %w", oid, tid, err)
			}
			p.roots = append(p.roots, refs...)
			return nil
		}
		o.older++
		if o.keep == 0 {
			o.keep = tid
			return item.Value(func(v []byte) error {
				o.keepData = len(v) > 0 && v[0] == tagData
				return nil
			})
		}
		return nil
	})
}

func (p *packer) find(oid stack.Oid) (int, bool) {
	return slices.BinarySearchFunc(p.objs, oid, func(o packObj, oid stack.Oid) int {
		switch {
		case o.oid < oid:
			return -1
		case o.oid > oid:
			return 1
		}
		return 0
	})
}

// mark finds the objects reachable from the root in the state at the
// pack time, and from every later revision.
func (p *packer) mark() error {
	p.reach = make([]bool, len(p.objs))
	todo := append(p.roots, 0)
	p.roots = nil
	for len(todo) > 0 {
		err := p.s.at(p.ctx, p.readTs, func(txn *badger.Txn, _ stack.Tid) error {
			for n := 0; n < packStep && len(todo) > 0; n++ {
				oid := todo[len(todo)-1]
				todo = todo[:len(todo)-1]
				i, ok := p.find(oid)
				if !ok || p.reach[i] {
					continue
				}
				p.reach[i] = true
				o := p.objs[i]
				if o.keep == 0 || !o.keepData {
					continue
				}
				r, found, err := getRevision(txn, oid, o.keep)
				if err != nil || !found {
					return err
				}
				refs, err := stack.Refs(r.data)
				if err != nil {
					return fmt.Errorf("references of object %s at %s: %w", oid, o.keep, err)
				}
				todo = append(todo, refs...)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// sweep deletes the revisions pack removes, with their oid entries and
// blob files, and drops the data transaction of the revisions it keeps
// at or before the pack time (they no longer repeat anything).
func (p *packer) sweep() error {
	i := -1
	return p.scan([]byte{famObject}, []byte{famObject}, func(item *badger.Item) error {
		oid, tid, err := parseObjectKey(item.Key())
		if err != nil {
			return err
		}
		if i < 0 || p.objs[i].oid != oid {
			var ok bool
			if i, ok = p.find(oid); !ok {
				return fmt.Errorf("object %s appeared during pack", oid)
			}
			if o := p.objs[i]; !o.later && !p.live(i) && o.older > 0 {
				p.gone++
			}
		}
		if tid > p.packTid {
			return nil
		}
		o := p.objs[i]
		if p.live(i) && tid == o.keep {
			r, _, err := itemRevision(item)
			if err != nil || r.dataTxn == 0 {
				return err
			}
			p.ops = append(p.ops, packOp{key: item.KeyCopy(nil), tid: tid, value: revisionValue(r.data, 0)})
			return nil
		}
		p.ops = append(p.ops,
			packOp{key: item.KeyCopy(nil), tid: tid},
			packOp{key: txnOidKey(tid, oid), tid: tid})
		p.removedFrom[tid]++
		p.removed++
		if p.s.blobs != nil {
			p.blobs = append(p.blobs, p.s.blobs.File(oid, tid))
		}
		return nil
	})
}

// packTxns marks the transactions at or before the pack time packed, and
// deletes those left without records.
func (p *packer) packTxns() error {
	return p.scan([]byte{famTxn}, []byte{famTxn}, func(item *badger.Item) error {
		tid, err := parseTxnKey(item.Key())
		if err != nil || tid > p.packTid {
			return err
		}
		var tr txnRecord
		if err := item.Value(func(v []byte) error {
			tr, err = parseTxn(tid, v)
			return err
		}); err != nil {
			return err
		}
		left := tr.records - p.removedFrom[tid]
		if left <= 0 {
			p.ops = append(p.ops, packOp{key: txnKey(tid), tid: tid})
			return nil
		}
		if tr.meta.Status != 'p' || left != tr.records {
			tr.meta.Status = 'p'
			tr.records = left
			p.ops = append(p.ops, packOp{key: txnKey(tid), tid: tid, value: txnValue(tr)})
		}
		return nil
	})
}

// flush writes the collected operations, then removes the blob files of
// the revisions they deleted.
func (p *packer) flush() error {
	if len(p.ops) > 0 {
		if err := p.s.apply(p.ops, p.version); err != nil {
			return err
		}
		p.ops = p.ops[:0]
	}
	for _, b := range p.blobs {
		if err := os.Remove(b); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		os.Remove(filepath.Dir(b)) // the object's directory, once empty
	}
	p.blobs = p.blobs[:0]
	return nil
}

// apply writes pack operations, each at the version given for its tid.
func (s *Storage) apply(ops []packOp, version func(stack.Tid) uint64) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return stack.ErrClosed
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	wb := s.db.NewManagedWriteBatch()
	defer wb.Cancel()
	for _, op := range ops {
		var err error
		if op.value == nil {
			err = wb.DeleteAt(op.key, version(op.tid))
		} else {
			err = wb.SetEntryAt(badger.NewEntry(op.key, op.value), version(op.tid))
		}
		if err != nil {
			return err
		}
	}
	return wb.Flush()
}

// reclaim gives the space of deleted entries back: the memtables are
// flushed (while no commit writes, for a moment), every level is
// compacted into one, which drops deleted entries, and the value log
// files that became mostly garbage are rewritten.
func (s *Storage) reclaim(log logrus.FieldLogger) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return stack.ErrClosed
	}
	before, _ := diskUsage(string(s.opts.Path))
	err := func() error {
		s.wmu.Lock()
		defer s.wmu.Unlock()
		txn := s.db.NewTransactionAt(s.metaTs, true)
		defer txn.Discard()
		if err := txn.Set(keyReclaim, nil); err != nil {
			return err
		}
		if err := txn.CommitAt(s.metaTs, nil); err != nil {
			return err
		}
		return s.db.DropPrefix(keyReclaim)
	}()
	if err != nil {
		return fmt.Errorf("flushing memtables: %w", err)
	}
	if err := s.db.Flatten(s.opts.NumCompactors); err != nil {
		return fmt.Errorf("compacting: %w", err)
	}
	files := 0
	for s.db.RunValueLogGC(0.5) == nil {
		files++
	}
	after, _ := diskUsage(string(s.opts.Path))
	log.WithFields(logrus.Fields{"disk_before": before, "disk_after": after, "vlog_files_rewritten": files}).Info("space reclaimed")
	return nil
}
