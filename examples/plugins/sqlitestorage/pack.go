package sqlitestorage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/stack"
)

// Pack is ZODB's pack: it removes the revisions not needed to read any
// state at or after t and, with gc (and pack-gc), the revisions up to t
// of objects unreachable from the root, as mappingstorage's Pack does.
// Transactions up to t that keep records get status 'p'; those left
// empty go. When nothing would be removed, nothing changes.
//
// It surveys the history in one read snapshot without the commit lock;
// commits go on meanwhile. Then it takes the commit lock, follows the
// references of what was committed since the snapshot (an object
// unreachable at the snapshot may have been linked again), and deletes
// in one SQL transaction.
func (s *Storage) Pack(ctx context.Context, t time.Time, gc bool) (err error) {
	defer stack.WrapOp(&err, s.node, "pack", nil, nil)
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
	p := &packer{s: s, packTid: pt, gc: gc && s.opts.PackGC}
	start := time.Now()
	err = s.use(ctx, func() error { return p.run(ctx) })
	log := s.log.WithFields(logrus.Fields{"pack_tid": p.packTid.String(), "gc": p.gc})
	if err != nil {
		log.WithError(err).Error("pack failed")
		return err
	}
	log.WithFields(logrus.Fields{"revisions_removed": p.removed, "objects_removed": p.gone,
		"took": time.Since(start).Round(time.Millisecond).String()}).Info("packed")
	return nil
}

// packObj is one object with revisions at or before the pack time.
type packObj struct {
	oid      stack.Oid
	tids     []stack.Tid // its revisions up to the pack time, oldest first
	keepData bool        // the newest of them has data (is no deletion)
	later    bool        // it has revisions after the pack time
}

type packer struct {
	s       *Storage
	packTid stack.Tid
	gc      bool
	readTs  stack.Tid // the last transaction in the survey's snapshot

	objs  []packObj // by oid
	reach []bool    // parallel to objs; only with gc
	todo  []stack.Oid

	removed, gone int
}

func (p *packer) run(ctx context.Context) error {
	start := time.Now()
	if err := p.survey(ctx); err != nil {
		return err
	}
	if p.packTid == 0 {
		return nil
	}
	p.s.log.WithFields(logrus.Fields{"pack_tid": p.packTid.String(), "objects": len(p.objs),
		"took": time.Since(start).Round(time.Millisecond).String()}).Debug("pack surveyed; waiting for the commit lock")
	select {
	case p.s.commitLock <- struct{}{}:
	case <-p.s.done:
		return stack.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-p.s.commitLock }()
	if err := p.since(ctx); err != nil {
		return err
	}
	return p.sweep(ctx)
}

// survey reads, in one snapshot, every revision up to the pack time and,
// with gc, marks what is reachable from the root at the pack time and
// from every later revision.
func (p *packer) survey(ctx context.Context) error {
	tx, err := p.s.rd.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var last []byte
	if err := tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = 'last_tid'`).Scan(&last); err != nil {
		return err
	}
	if p.readTs, err = u64[stack.Tid](last); err != nil {
		return err
	}
	p.packTid = min(p.packTid, p.readTs)
	if p.packTid == 0 {
		return nil
	}
	rows, err := tx.QueryContext(ctx, `SELECT oid, tid, data IS NULL FROM object_state WHERE tid <= ? ORDER BY oid, tid`, p64(p.packTid))
	if err != nil {
		return err
	}
	for rows.Next() {
		var ob, tb []byte
		var deleted bool
		if err := rows.Scan(&ob, &tb, &deleted); err != nil {
			rows.Close()
			return err
		}
		oid, err1 := u64[stack.Oid](ob)
		tid, err2 := u64[stack.Tid](tb)
		if err := errors.Join(err1, err2); err != nil {
			rows.Close()
			return err
		}
		if n := len(p.objs); n == 0 || p.objs[n-1].oid != oid {
			p.objs = append(p.objs, packObj{oid: oid})
		}
		o := &p.objs[len(p.objs)-1]
		o.tids = append(o.tids, tid)
		o.keepData = !deleted
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if err := p.laterRevisions(ctx, tx, p.packTid, p.readTs); err != nil {
		return err
	}
	if p.gc {
		p.reach = make([]bool, len(p.objs))
		p.todo = append(p.todo, 0)
		if err := p.mark(ctx, tx); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// laterRevisions notes the objects with revisions in (after, upTo] (upTo
// 0: unbounded) and, with gc, queues what they reference.
func (p *packer) laterRevisions(ctx context.Context, q querier, after, upTo stack.Tid) error {
	query := `SELECT oid, tid, data FROM object_state WHERE tid > ?1 AND (?2 IS NULL OR tid <= ?2)`
	if !p.gc {
		query = `SELECT oid, tid, NULL FROM object_state WHERE tid > ?1 AND (?2 IS NULL OR tid <= ?2)`
	}
	rows, err := q.QueryContext(ctx, query, p64(after), nullable(upTo))
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var ob, tb, data []byte
		if err := rows.Scan(&ob, &tb, &data); err != nil {
			return err
		}
		oid, err := u64[stack.Oid](ob)
		if err != nil {
			return err
		}
		if i, ok := p.find(oid); ok {
			p.objs[i].later = true
		}
		if data != nil {
			refs, err := stack.Refs(data)
			if err != nil {
				tid, _ := u64[stack.Tid](tb)
				return &stack.StorageError{Msg: fmt.Sprintf("pack: references of object %s at %s: %v", oid, tid, err)}
			}
			p.todo = append(p.todo, refs...)
		}
	}
	return rows.Err()
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

// mark follows the queued references through the revisions current at
// the pack time.
func (p *packer) mark(ctx context.Context, q querier) error {
	for len(p.todo) > 0 {
		oid := p.todo[len(p.todo)-1]
		p.todo = p.todo[:len(p.todo)-1]
		i, ok := p.find(oid)
		if !ok || p.reach[i] {
			continue
		}
		p.reach[i] = true
		o := p.objs[i]
		if !o.keepData {
			continue
		}
		keep := o.tids[len(o.tids)-1]
		rows, err := q.QueryContext(ctx, `SELECT data FROM object_state WHERE oid = ? AND tid = ?`, p64(oid), p64(keep))
		if err != nil {
			return err
		}
		var data []byte
		if rows.Next() {
			err = rows.Scan(&data)
		}
		err = errors.Join(err, rows.Err(), rows.Close())
		if err != nil {
			return err
		}
		refs, err := stack.Refs(data)
		if err != nil {
			return &stack.StorageError{Msg: fmt.Sprintf("pack: references of object %s at %s: %v", oid, keep, err)}
		}
		p.todo = append(p.todo, refs...)
	}
	return nil
}

// since takes in what was committed after the survey's snapshot, under
// the commit lock: those revisions are all after the pack time, but they
// count as later revisions and, with gc, as roots.
func (p *packer) since(ctx context.Context) error {
	if err := p.laterRevisions(ctx, p.s.rd, p.readTs, 0); err != nil {
		return err
	}
	if !p.gc {
		return nil
	}
	return p.mark(ctx, p.s.rd)
}

// live reports whether object i keeps its revision at the pack time.
func (p *packer) live(i int) bool {
	return p.objs[i].keepData && (!p.gc || p.reach[i])
}

// sweep deletes what pack removes in one SQL transaction, then the blob
// files of the removed revisions.
func (p *packer) sweep(ctx context.Context) error {
	type rev struct {
		oid stack.Oid
		tid stack.Tid
	}
	var doomed []rev
	for i, o := range p.objs {
		drop := o.tids
		if p.live(i) {
			drop = o.tids[:len(o.tids)-1]
		} else if !o.later && o.keepData {
			p.gone++
		}
		for _, tid := range drop {
			doomed = append(doomed, rev{o.oid, tid})
		}
	}
	if len(doomed) == 0 {
		p.gone = 0
		return nil
	}
	tx, err := p.s.wr.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	del, err := tx.PrepareContext(ctx, `DELETE FROM object_state WHERE oid = ? AND tid = ?`)
	if err != nil {
		return err
	}
	defer del.Close()
	for i, r := range doomed {
		if i%1024 == 1023 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if _, err := del.ExecContext(ctx, p64(r.oid), p64(r.tid)); err != nil {
			return err
		}
	}
	pt := p64(p.packTid)
	for _, q := range []string{
		// What is kept up to the pack time repeats nothing any more.
		`UPDATE object_state SET data_txn = NULL WHERE tid <= ?1 AND data_txn IS NOT NULL`,
		`DELETE FROM transactions WHERE tid <= ?1 AND NOT EXISTS (SELECT 1 FROM object_state o WHERE o.tid = transactions.tid)`,
		`UPDATE transactions SET status = 'p' WHERE tid <= ?1 AND status != 'p'`,
	} {
		if _, err := tx.ExecContext(ctx, q, pt); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE meta SET value = value - ? WHERE name = 'objects'`, p.gone); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	p.removed = len(doomed)
	p.s.objects.Add(-int64(p.gone))
	if p.s.blobs != nil {
		for _, r := range doomed {
			f := p.s.blobs.File(r.oid, r.tid)
			if err := os.Remove(f); err == nil {
				os.Remove(filepath.Dir(f)) // the object's directory, once empty
			} else if !errors.Is(err, os.ErrNotExist) {
				p.s.log.WithError(err).WithField("file", f).Warn("cannot remove the blob file of a packed revision")
			}
		}
	}
	return nil
}
