package filestorage

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/blobdir"
)

// Pack removes the revisions not needed to read any state at or after t
// (docs/filestorage.md §5): it writes Data.fs.pack while commits go on, then
// swaps it in under the commit lock, keeping Data.fs.old per pack-keep-old.
// gc also drops objects unreachable from the root (references from
// stack.Refs), unless the storage was configured with pack-gc false. The
// result is Python's byte for byte, except where Python fails or leaves a
// dangling reference (see findReachable) and for backpointers written by
// commits during the pack (see copyRest).
func (s *Storage) Pack(ctx context.Context, t time.Time, gc bool) (err error) {
	defer stack.WrapOp(&err, s.node, "pack", nil, nil)
	if s.readOnly {
		return stack.ErrReadOnly
	}
	packTid := stack.TidFromTime(t)
	if packTid == 0 {
		return &stack.StorageError{Msg: fmt.Sprintf("pack time %s is before 1900", t)}
	}
	if !s.packing.CompareAndSwap(false, true) {
		return &stack.StorageError{Msg: "Already packing"}
	}
	defer s.packing.Store(false)
	if err := s.readable(); err != nil {
		return err
	}
	end, empty := s.pos, s.ix.len() == 0
	s.mu.RUnlock()
	if empty {
		return nil
	}
	for _, old := range []string{s.path + ".old", s.path + ".pack"} {
		if err := os.Remove(old); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if s.blobs != nil {
		if err := os.RemoveAll(s.blobs.Path + ".old"); err != nil {
			return err
		}
	}
	live := s.live.Load()
	gc = gc && live.PackGC // pack-gc false is the operator's veto
	log := s.log.WithFields(logrus.Fields{"pack_tid": packTid.String(), "gc": gc})
	p := &packer{s: s, log: log, packTid: packTid, gc: gc, keepOld: live.PackKeepOld}
	err = p.run(ctx, end)
	if err != nil {
		os.Remove(s.path + ".pack")
		log.WithError(err).Error("pack failed")
	}
	return err
}

type packer struct {
	s       *Storage
	log     logrus.FieldLogger
	packTid stack.Tid
	gc      bool
	keepOld bool // pack-keep-old when the pack started

	src     reader
	packPos int64
	// cur is Python's oid2curpos: each oid's record at the pack time, 0
	// for an object deleted by then. reachable is Python's reachable: the
	// record kept as each reached object's state (cur itself without gc).
	// extra holds the other records kept (reach_ex, and without gc the
	// targets of later backpointers), and targets the records that later
	// backpointers name, whose new positions moved must remember.
	cur       *index
	reachable *index
	extra     map[int64]bool
	targets   map[int64]bool
	dangling  map[stack.Oid]bool // references already reported as dangling

	out     *os.File
	w       *bufio.Writer
	outPos  int64
	newIx   *index
	moved   map[int64]int64 // old record position -> new one, for backpointers
	removed []string        // blob files or oid dirs to remove
}

func (p *packer) run(ctx context.Context, end int64) error {
	f, err := os.Open(p.s.path)
	if err != nil {
		return err
	}
	defer f.Close()
	p.src = reader{r: f, path: p.s.path}
	redundant, err := p.buildPackIndex(ctx, end)
	if err != nil || redundant {
		return err
	}
	if err := p.findReachable(ctx, end); err != nil {
		return err
	}
	if p.out, err = os.Create(p.s.path + ".pack"); err != nil {
		return err
	}
	defer p.out.Close()
	p.w = bufio.NewWriterSize(p.out, 1<<20)
	p.newIx, p.moved = newIndex(), map[int64]int64{}
	if err := p.write([]byte(magicFS30)); err != nil {
		return err
	}
	if err := p.copyToPackTime(ctx); err != nil {
		return err
	}
	if p.outPos == p.packPos {
		p.log.Info("pack freed nothing; file left unchanged")
		p.out.Close()
		return os.Remove(p.s.path + ".pack")
	}
	// Copy what was committed after the pack time, first without the
	// commit lock, then the rest with it, and swap.
	pos, err := p.copyRest(ctx, p.packPos, end)
	if err != nil {
		return err
	}
	select {
	case p.s.commitLock <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-p.s.commitLock }()
	p.s.mu.RLock()
	end2 := p.s.pos
	p.s.mu.RUnlock()
	if _, err := p.copyRest(ctx, pos, end2); err != nil {
		return err
	}
	return p.swap()
}

// buildPackIndex scans up to the pack time (phase 1, docs/filestorage.md §5.1). It reports a
// redundant pack (nothing new to pack) as true.
func (p *packer) buildPackIndex(ctx context.Context, end int64) (bool, error) {
	p.cur = newIndex()
	pos := int64(len(magicFS30))
	allPacked := true
	var last stack.Tid
	for pos < end {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		h, err := p.src.txnHeader(pos)
		if err != nil {
			return false, err
		}
		if h.tid <= last {
			return false, p.src.corrupt(pos, "transaction id %s does not follow %s", h.tid, last)
		}
		last = h.tid
		if h.tid > p.packTid {
			break
		}
		if h.next() > end || h.status == statusCheckpoint {
			return false, p.src.corrupt(pos, "incomplete transaction inside committed data")
		}
		if h.status != statusPacked {
			allPacked = false
		}
		if h.status != statusUndone {
			err := scanRecords(p.src, &h, nil, nil, func(d dataHeader) error {
				if err := p.checkRecord(d); err != nil {
					return err
				}
				if d.plen == 0 && d.back == 0 {
					if _, ok := p.cur.get(d.oid); ok {
						p.cur.set(d.oid, 0)
					}
				} else {
					p.cur.set(d.oid, d.pos)
				}
				return nil
			})
			if err != nil {
				return false, err
			}
		} else if err := checkTrailer(p.src, &h); err != nil {
			return false, err
		}
		pos = h.next()
	}
	p.packPos = pos
	if allPacked {
		atPackPacked := pos == end
		if !atPackPacked {
			h, err := p.src.txnHeader(pos)
			if err != nil {
				return false, err
			}
			atPackPacked = h.status == statusPacked
		}
		if atPackPacked {
			p.log.Warn("the database was already packed to a later time; nothing to do")
			return true, nil
		}
	}
	return false, nil
}

// checkRecord is consistency rule 8 for the packer.
func (p *packer) checkRecord(d dataHeader) error {
	if d.prev >= d.pos || d.back >= d.pos {
		return p.src.corrupt(d.pos, "record points forward (prev %d, back %d)", d.prev, d.back)
	}
	return nil
}

// findReachable decides which records before the pack time stay (phase 2,
// docs/filestorage.md §5.2), in Python's order so that both keep the same records: with gc,
// first everything the root reaches at the pack time, then the revisions
// later backpointers point at (reach_ex) and what those reference.
// Beyond Python, and only where Python would fail or leave a dangling
// reference: a dangling reference is logged and skipped (Python raises
// KeyError); without gc, backpointer targets are kept too (Python raises
// PackError when one is not current); with gc, the references of a
// backpointer target of an object unreachable at the pack time, and of
// every revision after the pack time, are walked as well.
func (p *packer) findReachable(ctx context.Context, end int64) error {
	p.extra, p.targets, p.dangling = map[int64]bool{}, map[int64]bool{}, map[stack.Oid]bool{}
	if !p.gc {
		p.reachable = p.cur
	} else {
		p.reachable = newIndex()
		if pos, ok := p.curPos(0); ok {
			p.reachable.set(0, pos)
			if err := p.walk(ctx, []int64{pos}); err != nil {
				return err
			}
		}
	}
	// findReachableFromFuture: backpointers after the pack time into the
	// packed region keep their targets.
	var extra, later []int64
	for pos := p.packPos; pos < end; {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := p.src.txnHeader(pos)
		if err != nil {
			return err
		}
		if h.next() > end {
			break
		}
		if h.status != statusUndone {
			err := scanRecords(p.src, &h, nil, nil, func(d dataHeader) error {
				if err := p.checkRecord(d); err != nil {
					return err
				}
				if d.back != 0 && d.back < p.packPos {
					p.targets[d.back] = true
					if !p.kept(d.oid, d.back) {
						if rp, _ := p.reachable.get(d.oid); p.gc && rp == 0 {
							p.reachable.set(d.oid, d.back)
						} else {
							p.extra[d.back] = true
						}
						extra = append(extra, d.back)
					}
				}
				if p.gc && (d.plen > 0 || d.back != 0) {
					later = append(later, d.pos)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		pos = h.next()
	}
	if !p.gc {
		return nil
	}
	return p.walk(ctx, append(extra, later...))
}

// curPos is oid's record at the pack time, if it was not deleted by then.
func (p *packer) curPos(oid stack.Oid) (int64, bool) {
	pos, _ := p.cur.get(oid)
	return pos, pos != 0
}

// kept tells whether the record of oid at pos (before the pack time)
// stays: Python's isReachable.
func (p *packer) kept(oid stack.Oid, pos int64) bool {
	if rp, _ := p.reachable.get(oid); rp == pos {
		return true
	}
	return p.extra[pos]
}

// walk marks reachable, for every oid the records at roots reference
// (transitively), its record at the pack time.
func (p *packer) walk(ctx context.Context, roots []int64) error {
	for len(roots) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		pos := roots[len(roots)-1]
		roots = roots[:len(roots)-1]
		d, err := p.src.dataHeader(pos)
		if err != nil {
			return err
		}
		data, err := p.src.resolve(d)
		if err == errNoData {
			continue
		}
		if err != nil {
			return err
		}
		refs, err := stack.Refs(data)
		if err != nil {
			p.log.WithError(err).WithField("oid", d.oid.String()).Warn("cannot read references; keeping the object's references unknown")
			continue
		}
		for _, ref := range refs {
			if _, ok := p.reachable.get(ref); ok {
				continue
			}
			cp, ok := p.curPos(ref)
			if !ok {
				// Created after the pack time, or dangling.
				if pos < p.packPos && !p.dangling[ref] {
					p.dangling[ref] = true
					p.log.WithFields(logrus.Fields{"oid": d.oid.String(), "ref": ref.String()}).Warn("dangling reference at pack time; skipped")
				}
				continue
			}
			p.reachable.set(ref, cp)
			roots = append(roots, cp)
		}
	}
	return nil
}

func (p *packer) write(b []byte) error {
	if p.outPos+int64(len(b)) >= maxFilePos {
		return errors.New("packed file would exceed 2^48 bytes")
	}
	_, err := p.w.Write(b)
	p.outPos += int64(len(b))
	return err
}

// copyToPackTime writes the kept records before the pack time, data
// inline, prev 0, in transactions with status 'p' (phase 3, docs/filestorage.md §5.3).
func (p *packer) copyToPackTime(ctx context.Context) error {
	for pos := int64(len(magicFS30)); pos < p.packPos; {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := p.src.txnHeader(pos)
		if err != nil {
			return err
		}
		pos = h.next()
		if h.status == statusUndone {
			continue
		}
		meta, err := p.src.txnMeta(&h)
		if err != nil {
			return err
		}
		tpos := p.outPos
		body := []byte{}
		thl := h.headerLen()
		type kept struct {
			oid    stack.Oid
			oldPos int64
			newPos int64
		}
		var ks []kept
		err = scanRecords(p.src, &h, nil, nil, func(d dataHeader) error {
			if !p.kept(d.oid, d.pos) {
				p.noteBlobRemoval(d)
				return nil
			}
			data, err := p.src.resolve(d)
			if err == errNoData {
				data, err = nil, nil
			}
			if err != nil {
				return err
			}
			np := tpos + thl + int64(len(body))
			ks = append(ks, kept{d.oid, d.pos, np})
			// prev is 0, as in Python: history stops at the pack time,
			// also for an older revision kept for a later backpointer.
			body = appendDataRecord(body, d.oid, d.tid, 0, tpos, data, 0)
			return nil
		})
		if err != nil {
			return err
		}
		if len(ks) == 0 {
			continue
		}
		for _, k := range ks {
			p.newIx.set(k.oid, k.newPos)
		}
		tlen := thl + int64(len(body))
		rec := appendTxnHeader(nil, h.tid, tlen, statusPacked, meta.User, meta.Description, meta.Extension)
		rec = appendUint64(append(rec, body...), uint64(tlen))
		if err := p.write(rec); err != nil {
			return err
		}
		for _, k := range ks {
			if p.targets[k.oldPos] {
				p.moved[k.oldPos] = k.newPos
			}
		}
	}
	return nil
}

// noteBlobRemoval records the blob file (or the oid's whole directory) a
// dropped record leaves behind (docs/filestorage.md §5.5).
func (p *packer) noteBlobRemoval(d dataHeader) {
	b := p.s.blobs
	if b == nil {
		return
	}
	data, err := p.src.resolve(d)
	if err != nil || !isBlobRecord(data) {
		return
	}
	rp, _ := p.reachable.get(d.oid)
	if rp == 0 {
		p.removed = append(p.removed, b.OidDir(d.oid))
		return
	}
	if ch, err := p.src.dataHeader(rp); err == nil && ch.tid == d.tid {
		return // a duplicate record of the kept revision (a ZEO bug)
	}
	p.removed = append(p.removed, b.File(d.oid, d.tid))
}

// copyRest copies transactions in [from, to) unchanged except positions:
// backpointers follow their targets or become inline data when the
// target was dropped (phase 4, docs/filestorage.md §5.3). Only the new positions of records
// that backpointers after the pack time named when the pack started are
// remembered, so a transaction committed during the pack that points
// before the pack time gets inline data where Python would find the
// kept record again; the data is the same. It returns where it stopped.
func (p *packer) copyRest(ctx context.Context, from, to int64) (int64, error) {
	pos := from
	for pos < to {
		if err := ctx.Err(); err != nil {
			return pos, err
		}
		h, err := p.src.txnHeader(pos)
		if err != nil {
			return pos, err
		}
		if h.next() > to || h.status == statusCheckpoint {
			return pos, p.src.corrupt(pos, "incomplete transaction inside committed data")
		}
		pos = h.next()
		if h.status == statusUndone {
			continue
		}
		meta, err := p.src.txnMeta(&h)
		if err != nil {
			return pos, err
		}
		tpos := p.outPos
		thl := h.headerLen()
		body := []byte{}
		tindex := map[stack.Oid]int64{}
		var moves [][2]int64
		err = scanRecords(p.src, &h, nil, nil, func(d dataHeader) error {
			np := tpos + thl + int64(len(body))
			var data []byte
			var back int64
			switch {
			case d.plen > 0:
				var err error
				if data, err = p.src.data(&d); err != nil {
					return err
				}
			case d.back != 0:
				if nb, ok := p.moved[d.back]; ok {
					back = nb
				} else {
					var err error
					data, err = p.src.resolve(d)
					if err == errNoData {
						data, err = nil, nil
					}
					if err != nil {
						return err
					}
				}
			}
			body = appendDataRecord(body, d.oid, d.tid, p.newIx.pos(d.oid), tpos, data, back)
			tindex[d.oid] = np
			moves = append(moves, [2]int64{d.pos, np})
			return nil
		})
		if err != nil {
			return pos, err
		}
		tlen := thl + int64(len(body))
		rec := appendTxnHeader(nil, h.tid, tlen, h.status, meta.User, meta.Description, meta.Extension)
		rec = appendUint64(append(rec, body...), uint64(tlen))
		if err := p.write(rec); err != nil {
			return pos, err
		}
		for oid, np := range tindex {
			p.newIx.set(oid, np)
		}
		for _, m := range moves {
			p.moved[m[0]] = m[1]
		}
	}
	return pos, nil
}

// swap makes the packed file Data.fs (phase 5, docs/filestorage.md §5.4). The caller holds the
// commit lock.
func (p *packer) swap() error {
	s := p.s
	if err := p.w.Flush(); err != nil {
		return err
	}
	if err := p.out.Sync(); err != nil {
		return err
	}
	nf, err := os.OpenFile(s.path+".pack", os.O_RDWR, 0)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if err := os.Rename(s.path, s.path+".old"); err != nil {
		s.mu.Unlock()
		nf.Close()
		return err
	}
	if err := os.Rename(s.path+".pack", s.path); err != nil {
		// Put the original back; the storage goes on with it.
		os.Rename(s.path+".old", s.path)
		s.mu.Unlock()
		nf.Close()
		return err
	}
	syncDir(filepath.Dir(s.path))
	s.f.Close()
	s.f = nf
	s.rd = reader{r: nf, path: s.path}
	s.ix = p.newIx
	s.txns.reset()
	s.pos = p.outPos
	ix, pos := s.ix, s.pos
	s.mu.Unlock()
	p.log.WithFields(logrus.Fields{"size": pos, "objects": ix.len()}).Info("packed")
	p.removeBlobs()
	if !p.keepOld {
		if err := os.Remove(s.path + ".old"); err != nil {
			p.log.WithError(err).Warn("cannot remove the pre-pack file")
		}
	}
	if err := writeIndex(s.path+".index", pos, ix); err != nil {
		p.log.WithError(err).Warn("cannot save the index after pack")
	}
	return nil
}

// removeBlobs deletes (or, keeping old files, moves to <blob-dir>.old) the
// blob files the pack dropped; with pack-keep-old the .old directory then
// gets hard links to every remaining blob, a full snapshot.
func (p *packer) removeBlobs() {
	b := p.s.blobs
	if b == nil {
		return
	}
	old := b.Path + ".old"
	keep := p.keepOld
	for _, r := range p.removed {
		var err error
		if keep {
			rel, _ := filepath.Rel(b.Path, r)
			dst := filepath.Join(old, rel)
			if err = os.MkdirAll(filepath.Dir(dst), 0o700); err == nil {
				err = os.Rename(r, dst)
			}
		} else {
			err = os.RemoveAll(r)
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			p.log.WithError(err).WithField("blob", r).Warn("cannot remove packed blob")
		}
		pruneEmpty(b.Path, filepath.Dir(r))
	}
	if !keep {
		return
	}
	_ = filepath.WalkDir(b.Path, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(b.Path, path)
		if d.IsDir() {
			if rel == "tmp" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".blob") && rel != ".layout" {
			return nil
		}
		dst := filepath.Join(old, rel)
		if os.MkdirAll(filepath.Dir(dst), 0o700) == nil {
			if rel == ".layout" {
				_ = blobdir.CopyFile(path, dst)
			} else if err := os.Link(path, dst); err != nil && !errors.Is(err, os.ErrExist) {
				p.log.WithError(err).WithField("blob", path).Warn("cannot link blob into the .old directory")
			}
		}
		return nil
	})
}

// pruneEmpty removes empty directories from dir up to (not including) top.
func pruneEmpty(top, dir string) {
	for dir != top && strings.HasPrefix(dir, top) {
		if os.Remove(dir) != nil {
			return
		}
		dir = filepath.Dir(dir)
	}
}

// syncDir fsyncs a directory so that renames in it are durable.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
