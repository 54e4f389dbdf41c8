package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// blobChunkSize is the largest receiveBlobChunk / storeBlobChunk Python uses.
const blobChunkSize = 59000

// register binds the connection to a storage (docs/protocol.md §4.2).
func (c *conn) register(id any, a zeoproto.Args) error {
	if err := a.Need(2, 3); err != nil { // ZEO 5.0–5.4 may add credentials
		return err
	}
	name, err := a.String(0)
	if err != nil {
		return err
	}
	readOnly, err := a.Bool(1)
	if err != nil {
		return err
	}
	ms := c.srv.mount(name)
	if ms == nil {
		return &zeoproto.RemoteError{Class: "builtins.ValueError", Payload: zeoproto.Tuple{"unknown storage: " + name}}
	}
	storageRO := ms.mount.Storage().Capabilities().ReadOnly
	if !readOnly && (c.srv.options().ReadOnly || storageRO) {
		return stack.ErrReadOnly
	}
	c.readOnly = readOnly || c.srv.options().ReadOnly || storageRO
	c.ms = ms
	tid := ms.register(c)
	c.reply(id, tid)
	c.log().WithField("read_only", c.readOnly).Info(c.labelled("registered"))
	return nil
}

func (c *conn) storage() stack.Storage { return c.ms.mount.Storage() }

// interfaces maps capabilities to the zope.interface names ClientStorage
// looks for in get_info (docs/protocol.md §4.3).
func interfaces(caps stack.Capabilities) zeoproto.Tuple {
	var out zeoproto.Tuple
	add := func(name string) { out = append(out, zeoproto.Tuple{"ZODB.interfaces", name}) }
	if caps.Blobs {
		if caps.Restore {
			add("IBlobStorageRestoreable")
		}
		add("IBlobStorage")
	}
	if caps.Restore {
		add("IStorageRestoreable")
	}
	if caps.Iterate {
		add("IStorageIteration")
	}
	if caps.Undo {
		add("IStorageUndoable")
	}
	if caps.RecordIter {
		add("IStorageCurrentRecordIteration")
	}
	if caps.Delete {
		add("IExternalGC")
	}
	add("IStorage")
	out = append(out, zeoproto.Tuple{"zope.interface", "Interface"})
	return out
}

func (c *conn) getInfo(id any, a zeoproto.Args) error {
	st := c.storage()
	info, err := st.Info(c.ctx)
	if err != nil {
		return err
	}
	caps := st.Capabilities()
	c.reply(id, zeoproto.Dict{
		{Key: "length", Value: info.Length},
		{Key: "size", Value: info.Size},
		{Key: "name", Value: info.Name},
		{Key: "supportsUndo", Value: caps.Undo},
		{Key: "supports_record_iternext", Value: caps.RecordIter},
		{Key: "interfaces", Value: interfaces(caps)},
		{Key: "extensionMethods", Value: c.srv.extensionMethods(st)},
	})
	return nil
}

func (c *conn) getExtensionMethods(id any, a zeoproto.Args) error {
	c.reply(id, c.srv.extensionMethods(c.storage()))
	return nil
}

func (c *conn) lastTransaction(id any, a zeoproto.Args) error {
	c.reply(id, c.ms.last())
	return nil
}

// getInvalidations answers from the invalidation queue, falling back to
// iterating the storage when invalidation-age allows (docs/protocol.md §4.5).
func (c *conn) getInvalidations(id any, a zeoproto.Args) error {
	tid, err := a.Tid(0)
	if err != nil {
		return err
	}
	c.ms.vis.RLock()
	defer c.ms.vis.RUnlock()
	if latest, oids, ok := c.ms.invalidations(tid); ok {
		c.reply(id, zeoproto.Tuple{latest, oids})
		return nil
	}
	// The queue cannot answer. Python fills it at start-up from the
	// storage's last invalidation-queue-size transactions; iterating
	// forward from tid with that limit gives the same answers. With
	// invalidation-age, a young enough tid is answered however far back.
	it, canIterate := stack.AsIterator(c.storage())
	if !canIterate {
		c.reply(id, nil)
		return nil
	}
	opts := c.srv.options()
	limit := opts.InvalidationQueueSize
	if age := opts.InvalidationAge; age > 0 && time.Since(tid.Time()).Seconds() < age {
		limit = 0
	} else if !c.ms.queueStartsAtStartup() {
		c.reply(id, nil)
		return nil
	}
	latest, oids, err := invalidationsByIteration(c.ctx, it, tid, c.ms.last(), limit)
	if err != nil {
		return err
	}
	if latest == 0 {
		c.reply(id, nil)
		return nil
	}
	c.reply(id, zeoproto.Tuple{latest, oids})
	return nil
}

// invalidationsByIteration collects the oids of transactions after tid up
// to upto (the clients' view, so the answer matches the invalidations the
// connection has been or will be sent). With limit > 0, more than limit
// transactions make the answer "none" (latest 0).
func invalidationsByIteration(ctx context.Context, it stack.Iterator, tid, upto stack.Tid, limit int) (stack.Tid, []stack.Oid, error) {
	ti, err := it.Iterate(ctx, tid+1, upto)
	if err != nil {
		return 0, nil, err
	}
	defer ti.Close()
	var latest stack.Tid
	seen := map[stack.Oid]bool{}
	var oids []stack.Oid
	count := 0
	for {
		rec, ok, err := ti.Next(ctx)
		if err != nil {
			return 0, nil, err
		}
		if !ok {
			return latest, oids, nil
		}
		if count++; limit > 0 && count > limit {
			return 0, nil, nil
		}
		latest = rec.Tid
		for _, r := range rec.Records {
			if !seen[r.Oid] {
				seen[r.Oid] = true
				oids = append(oids, r.Oid)
			}
		}
	}
}

func (c *conn) newOIDs(id any, a zeoproto.Args) error {
	if c.readOnly {
		return stack.ErrReadOnly
	}
	n := int64(100)
	if !a.IsNone(0) {
		var err error
		if n, err = a.Int(0); err != nil {
			return err
		}
	}
	n = min(max(n, 1), 100)
	oids, err := c.storage().NewOIDs(c.ctx, int(n))
	if err != nil {
		return err
	}
	c.reply(id, oids)
	return nil
}

func (c *conn) newOID(id any, a zeoproto.Args) error {
	if c.readOnly {
		return stack.ErrReadOnly
	}
	oids, err := c.storage().NewOIDs(c.ctx, 1)
	if err != nil {
		return err
	}
	c.reply(id, oids[0])
	return nil
}

// pack packs to time t (seconds since the epoch); with wait false the reply
// is immediate. Allowed on read-only connections (docs/protocol.md §4.10). When done, every
// connection of the storage gets an info message.
func (c *conn) pack(id any, a zeoproto.Args) error {
	if err := a.Need(1, 2); err != nil {
		return err
	}
	t, err := packTime(a[0])
	if err != nil {
		return err
	}
	wait := true
	if a.Len() > 1 {
		if wait, err = a.Bool(1); err != nil {
			return err
		}
	}
	st, release := c.ms.mount.Lease() // until the pack ends, even across a reload
	p, ok := stack.AsPacker(st)
	if !ok {
		release()
		return fmt.Errorf("%w: pack", stack.ErrNotSupported)
	}
	ms := c.ms
	run := func(ctx context.Context) error {
		defer release()
		c.log().WithField("pack_time", t.Format(time.RFC3339)).Info(c.labelled(fmt.Sprintf("pack(time=%s) started...", pythonNumber(a[0]))))
		if err := p.Pack(ctx, t, true); err != nil {
			c.log().WithError(err).Error(c.labelled("pack failed"))
			return err
		}
		c.log().Info(c.labelled(fmt.Sprintf("pack(time=%s) complete", pythonNumber(a[0]))))
		ms.broadcastInfo(ctx)
		return nil
	}
	if !wait {
		c.reply(id, nil)
		c.srv.spawn(func() { _ = run(c.srv.ctx) })
		return nil
	}
	c.srv.spawn(func() {
		if err := run(c.ctx); err != nil {
			c.replyErr(id, err)
			return
		}
		c.reply(id, nil)
	})
	return nil
}

// pythonNumber writes a number as Python's repr does (a float always has a
// fraction), so that the pack lines read as runzeo's.
func pythonNumber(v any) string {
	f, ok := v.(float64)
	if !ok {
		return fmt.Sprint(v)
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

func packTime(v any) (time.Time, error) {
	var secs float64
	switch x := v.(type) {
	case float64:
		secs = x
	default:
		n, ok := zeoproto.AsInt(v)
		if !ok {
			return time.Time{}, &zeoproto.ArgError{Index: 0, Want: "a time in seconds", Got: v}
		}
		secs = float64(n)
	}
	sec := int64(secs)
	return time.Unix(sec, int64((secs-float64(sec))*1e9)).UTC(), nil
}

// broadcastInfo sends info({length, size}) to every connection of the mount.
func (ms *mountState) broadcastInfo(ctx context.Context) {
	info, err := ms.mount.Storage().Info(ctx)
	if err != nil {
		return
	}
	for _, c := range ms.connections() {
		c.sendAsync("info", infoDict(info))
	}
}

func infoDict(info stack.Info) zeoproto.Dict {
	return zeoproto.Dict{{Key: "length", Value: info.Length}, {Key: "size", Value: info.Size}}
}

// loadBefore holds the visibility lock shared from the load until its reply
// is queued (see mountState).
func (c *conn) loadBefore(id any, a zeoproto.Args) error {
	oid, before, err := oidSerial(a, 2)
	if err != nil {
		return err
	}
	c.ms.loads.Add(1)
	c.ms.vis.RLock()
	defer c.ms.vis.RUnlock()
	rev, err := c.storage().LoadBefore(c.ctx, oid, before)
	if err != nil {
		return err
	}
	if !rev.Found() {
		c.reply(id, nil)
		return nil
	}
	var next any
	if rev.NextSerial != 0 {
		next = rev.NextSerial
	}
	c.reply(id, zeoproto.Tuple{rev.Data, rev.Serial, next})
	return nil
}

func (c *conn) loadSerial(id any, a zeoproto.Args) error {
	oid, serial, err := oidSerial(a, 2)
	if err != nil {
		return err
	}
	data, err := c.storage().LoadSerial(c.ctx, oid, serial)
	if err != nil {
		return err
	}
	c.reply(id, data)
	return nil
}

func (c *conn) getTid(id any, a zeoproto.Args) error {
	oid, err := a.Oid(0)
	if err != nil {
		return err
	}
	rev, err := c.storage().LoadBefore(c.ctx, oid, stack.MaxTid)
	if err != nil {
		return err
	}
	if !rev.Found() {
		return &stack.NotFoundError{Oid: oid}
	}
	c.reply(id, rev.Serial)
	return nil
}

func (c *conn) history(id any, a zeoproto.Args) error {
	if err := a.Need(1, 2); err != nil {
		return err
	}
	// As Python's storages answer: no object has the oid None
	// (POSKeyError, which clients do not log), and an explicit size of
	// None is a TypeError; only a missing size means 1.
	if a[0] == nil {
		return &stack.NotFoundError{}
	}
	oid, err := a.Oid(0)
	if err != nil {
		return err
	}
	size := int64(1)
	if len(a) > 1 {
		if size, err = a.Int(1); err != nil {
			return err
		}
	}
	entries, err := c.storage().History(c.ctx, oid, int(size))
	if err != nil {
		return err
	}
	out := make([]any, 0, len(entries))
	for _, e := range entries {
		// Extension keys first, then the standard keys win (FileStorage).
		d := c.srv.extension(e.Extension)
		d = setKeys(d,
			zeoproto.DictItem{Key: "time", Value: e.Tid.Seconds()},
			zeoproto.DictItem{Key: "user_name", Value: nonNilBytes(e.User)},
			zeoproto.DictItem{Key: "description", Value: nonNilBytes(e.Description)},
			zeoproto.DictItem{Key: "tid", Value: e.Tid},
			zeoproto.DictItem{Key: "size", Value: int64(e.Size)},
		)
		out = append(out, d)
	}
	c.reply(id, out)
	return nil
}

// setKeys sets (or overwrites in place) the given keys of d.
func setKeys(d zeoproto.Dict, items ...zeoproto.DictItem) zeoproto.Dict {
	for _, it := range items {
		replaced := false
		for i := range d {
			if k, ok := zeoproto.AsString(d[i].Key); ok && k == it.Key {
				d[i].Value = it.Value
				replaced = true
				break
			}
		}
		if !replaced {
			d = append(d, it)
		}
	}
	return d
}

func nonNilBytes(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func (c *conn) recordIternext(id any, a zeoproto.Args) error {
	ri, ok := stack.AsRecordIterator(c.storage())
	if !ok {
		return &zeoproto.RemoteError{Class: "builtins.AttributeError", Payload: zeoproto.Tuple{"record_iternext"}}
	}
	var from stack.Oid
	if !a.IsNone(0) {
		var err error
		if from, err = a.Oid(0); err != nil {
			return err
		}
	}
	rec, next, more, err := ri.RecordIterNext(c.ctx, from)
	if err != nil {
		return err
	}
	var nextV any
	if more {
		nextV = next
	}
	c.reply(id, zeoproto.Tuple{rec.Oid, rec.Tid, nonNilBytes(rec.Data), nextV})
	return nil
}

// sendBlob streams a committed blob as receiveBlob* messages, all queued
// before the reply (docs/protocol.md §4.16).
func (c *conn) sendBlob(id any, a zeoproto.Args) error {
	oid, serial, err := oidSerial(a, 2)
	if err != nil {
		return err
	}
	b, ok := stack.AsBlobber(c.storage())
	if !ok {
		return &stack.NotFoundError{Oid: oid, Tid: serial}
	}
	path, err := b.LoadBlob(c.ctx, oid, serial)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return &stack.NotFoundError{Oid: oid, Tid: serial}
		}
		return err
	}
	defer f.Close()
	c.sendAsync("receiveBlobStart", oid, serial)
	buf := make([]byte, blobChunkSize)
	for {
		n, err := io.ReadFull(f, buf)
		if n > 0 {
			c.sendAsync("receiveBlobChunk", oid, serial, append([]byte(nil), buf[:n]...))
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return err
		}
	}
	c.sendAsync("receiveBlobStop", oid, serial)
	c.reply(id, nil)
	return nil
}

// undoLog and undoInfo run on their own goroutine, as Python runs them in
// worker threads; storages without undo answer an empty tuple.
func (c *conn) undoLog(id any, a zeoproto.Args) error {
	return c.undoList(id, a, nil)
}

func (c *conn) undoInfo(id any, a zeoproto.Args) error {
	var spec zeoproto.Dict
	if !a.IsNone(2) {
		d, ok := a[2].(zeoproto.Dict)
		if !ok {
			return &zeoproto.ArgError{Index: 2, Want: "a dict or None", Got: a[2]}
		}
		spec = d
	}
	return c.undoList(id, a, spec)
}

func (c *conn) undoList(id any, a zeoproto.Args, spec zeoproto.Dict) error {
	first, last := int64(0), int64(-20)
	var err error
	if !a.IsNone(0) {
		if first, err = a.Int(0); err != nil {
			return err
		}
	}
	if !a.IsNone(1) {
		if last, err = a.Int(1); err != nil {
			return err
		}
	}
	st, release := c.ms.mount.Lease() // until the answer, even across a reload
	u, ok := stack.AsUndoer(st)
	if !ok {
		release()
		c.reply(id, zeoproto.Tuple{})
		return nil
	}
	c.srv.spawn(func() {
		defer release()
		var match func(stack.UndoInfo) bool
		if spec != nil {
			match = func(ui stack.UndoInfo) bool { return specMatches(spec, c.srv.undoDict(ui)) }
		}
		infos, err := u.UndoLog(c.ctx, int(first), int(last), match)
		if err != nil {
			c.replyErr(id, err)
			return
		}
		out := make([]any, 0, len(infos))
		for _, ui := range infos {
			out = append(out, c.srv.undoDict(ui))
		}
		c.reply(id, out)
	})
	return nil
}

// undoDict is an undoLog entry: the standard keys, then the extension's
// keys, which win (FileStorage's order).
func (s *Server) undoDict(ui stack.UndoInfo) zeoproto.Dict {
	d := zeoproto.Dict{
		{Key: "id", Value: ui.ID},
		{Key: "time", Value: ui.Tid.Seconds()},
		{Key: "user_name", Value: nonNilBytes(ui.User)},
		{Key: "size", Value: int64(ui.Size)},
		{Key: "description", Value: nonNilBytes(ui.Description)},
	}
	return setKeys(d, s.extension(ui.Extension)...)
}

// specMatches is undoInfo's filter: every (key, value) of spec must be in
// d; a ZopeUndo.Prefix value matches user names that start with its path.
func specMatches(spec, d zeoproto.Dict) bool {
	for _, it := range spec {
		k, ok := zeoproto.AsString(it.Key)
		if !ok {
			return false
		}
		v, present := d.Get(k)
		if obj, isObj := it.Value.(*zeoproto.Object); isObj && obj.Callable.String() == "ZopeUndo.Prefix.Prefix" {
			if !present || len(obj.Args) == 0 {
				return false
			}
			prefix, _ := zeoproto.AsString(obj.Args[0])
			have, _ := zeoproto.AsString(v)
			if !strings.HasPrefix(have, prefix) {
				return false
			}
			continue
		}
		if !present || !valuesEqual(v, it.Value) {
			return false
		}
	}
	return true
}

func valuesEqual(a, b any) bool {
	if ab, ok := zeoproto.AsBytes(a); ok {
		bb, ok := zeoproto.AsBytes(b)
		return ok && string(ab) == string(bb)
	}
	return fmt.Sprint(a) == fmt.Sprint(b)
}

func (c *conn) serverStatus(id any, a zeoproto.Args) error {
	c.reply(id, c.ms.status())
	return nil
}

func (c *conn) ping(id any, a zeoproto.Args) error {
	c.reply(id, nil)
	return nil
}

// setClientLabel names the connection in its log lines from now on
// (docs/protocol.md §4.19); ZEO's ClientStorage sends its client-label
// option.
func (c *conn) setClientLabel(a zeoproto.Args) error {
	label, err := a.String(0)
	if err != nil {
		return err
	}
	c.label.Store(&label)
	return nil
}
