package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/zeoraid/zeoraid/plugins/internal/wire"
	"github.com/zeoraid/zeoraid/plugins/proto"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

// errNotOpen answers calls made before Open or after Close.
var errNotOpen = fmt.Errorf("the plugin has no open storage: %w", stack.ErrClosed)

// server serves the modules' storage of one plugin process. Its storage
// and transactions are guarded by mu.
type server struct {
	proto.UnimplementedStorageServer
	modules map[string]*stack.Module // by type and alias
	order   []*stack.Module
	log     logrus.FieldLogger
	major   int

	mu     sync.Mutex
	st     stack.Storage
	node   string
	txns   map[uint64]*txnState // by the id the host gave
	closed bool
}

func newServer(modules []stack.Module, log logrus.FieldLogger, major int) *server {
	s := &server{modules: map[string]*stack.Module{}, log: log, major: major, txns: map[uint64]*txnState{}}
	for i := range modules {
		m := &modules[i]
		s.order = append(s.order, m)
		for _, name := range append([]string{m.Type}, m.Aliases...) {
			s.modules[name] = m
		}
	}
	return s
}

// storage returns the open storage.
func (s *server) storage() (stack.Storage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st == nil {
		return nil, errNotOpen
	}
	return s.st, nil
}

// txn returns the open transaction id.
func (s *server) txn(id uint64) (*txnState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.txns[id]
	if !ok {
		return nil, fmt.Errorf("no transaction %d in the plugin: %w", id, stack.ErrTxnState)
	}
	return t, nil
}

// shutdown closes the storage, waiting at most timeout (a storage whose
// Close hangs must not keep an orphan alive).
func (s *server) shutdown(timeout time.Duration) {
	s.mu.Lock()
	st := s.st
	s.st, s.closed = nil, true
	s.mu.Unlock()
	if st == nil {
		return
	}
	done := make(chan error, 1)
	go func() { done <- st.Close() }()
	select {
	case err := <-done:
		if err != nil {
			s.log.WithError(err).Error("closing the storage")
		}
	case <-time.After(timeout):
		s.log.WithField("timeout", timeout.String()).Error("the storage did not close in time")
	}
}

func (s *server) Describe(context.Context, *proto.DescribeRequest) (*proto.DescribeResponse, error) {
	r := &proto.DescribeResponse{Major: uint32(s.major)}
	for _, m := range s.order {
		pm := &proto.Module{Type: m.Type, Aliases: m.Aliases, Doc: m.Doc}
		if m.Options != nil {
			pm.Keys = wire.KeyDocs(zconfig.Describe(m.Options))
		}
		r.Modules = append(r.Modules, pm)
	}
	return r, nil
}

// decode decodes a section into its module's options and runs the
// options' own checks, returning every positioned problem.
func (s *server) decode(sec *proto.Section) (*stack.Module, any, zconfig.ErrorList) {
	section := wire.SectionFrom(sec)
	m, ok := s.modules[section.Type]
	if !ok {
		return nil, nil, zconfig.ErrorList{{Pos: section.Pos, Msg: fmt.Sprintf("this plugin has no section type <%s>", section.Type)}}
	}
	opts := m.NewOptions()
	if opts == nil {
		if len(section.Keys) > 0 {
			return m, nil, zconfig.ErrorList{{Pos: section.Keys[0].Pos, Msg: fmt.Sprintf("<%s> takes no keys", section.Type)}}
		}
		return m, nil, nil
	}
	if err := zconfig.Decode(section, opts); err != nil {
		var l zconfig.ErrorList
		if errors.As(err, &l) {
			return m, nil, l
		}
		return m, nil, zconfig.ErrorList{{Pos: section.Pos, Msg: err.Error()}}
	}
	if v, ok := opts.(stack.OptionsValidator); ok {
		if err := v.Validate(0); err != nil {
			return m, nil, zconfig.ErrorList{{Pos: section.Pos, Msg: fmt.Sprintf("<%s %s>: %v", section.Type, section.Name, err)}}
		}
	}
	return m, opts, nil
}

// Check decodes a section as Open would, opening nothing, for the host's
// dry runs (`zeoraid validate`).
func (s *server) Check(_ context.Context, r *proto.CheckRequest) (*proto.CheckResponse, error) {
	_, _, errs := s.decode(r.GetSection())
	return &proto.CheckResponse{Errors: wire.ConfigErrors(errs)}, nil
}

// emptier is a storage that can drop every transaction (the interface a
// RAID's rebuild asks of its children).
type emptier interface {
	Empty(ctx context.Context) error
}

func (s *server) Open(ctx context.Context, r *proto.OpenRequest) (*proto.OpenResponse, error) {
	s.mu.Lock()
	busy := s.st != nil || s.closed
	s.mu.Unlock()
	if busy {
		return &proto.OpenResponse{Failure: wire.Failure(errors.New("the plugin process already opened its storage"))}, nil
	}
	m, opts, errs := s.decode(r.GetSection())
	if errs != nil {
		return &proto.OpenResponse{Failure: wire.Failure(errs)}, nil
	}
	ni := r.GetNode()
	node := &stack.Node{
		Path: ni.GetPath(), Name: ni.GetName(), Type: ni.GetType(), Pool: stack.NewPool(),
		Log: s.log.WithFields(logrus.Fields{"node": ni.GetPath(), "type": ni.GetType(), "storage": ni.GetStorage()}),
	}
	st, err := m.Open(ctx, node, opts)
	if err != nil {
		return &proto.OpenResponse{Failure: wire.Failure(err)}, nil
	}
	last, err := st.LastTransaction(ctx)
	if err != nil {
		_ = st.Close()
		return &proto.OpenResponse{Failure: wire.Failure(err)}, nil
	}
	s.mu.Lock()
	s.st, s.node = st, ni.GetPath()
	s.mu.Unlock()
	resp := &proto.OpenResponse{Capabilities: wire.Capabilities(st.Capabilities()), Last: uint64(last)}
	_, resp.Capabilities.Empty = st.(emptier)
	if ext, ok := st.(stack.Extender); ok {
		for name := range ext.Extensions() {
			resp.Extensions = append(resp.Extensions, name)
		}
		sort.Strings(resp.Extensions)
		if ro, ok := st.(stack.ReadOnlyExtender); ok {
			resp.ReadOnlyExtensions = ro.ReadOnlyExtensions()
		}
	}
	return resp, nil
}

// EmptyStorage empties the storage, for a RAID's rebuild.
func (s *server) EmptyStorage(ctx context.Context, _ *proto.Empty) (*proto.Result, error) {
	st, err := s.storage()
	if err == nil {
		e, ok := st.(emptier)
		if !ok {
			err = fmt.Errorf("the storage cannot be emptied: %w", stack.ErrNotSupported)
		} else {
			err = e.Empty(ctx)
		}
	}
	return &proto.Result{Failure: wire.Failure(err)}, nil
}

// Extension runs one of the storage's extension calls.
func (s *server) Extension(ctx context.Context, r *proto.ExtensionRequest) (*proto.ExtensionResponse, error) {
	st, err := s.storage()
	if err != nil {
		return &proto.ExtensionResponse{Failure: wire.Failure(err)}, nil
	}
	var f stack.Extension
	if ext, ok := st.(stack.Extender); ok {
		f = ext.Extensions()[r.GetName()]
	}
	if f == nil {
		return &proto.ExtensionResponse{Failure: wire.Failure(fmt.Errorf("no extension call %q: %w", r.GetName(), stack.ErrNotSupported))}, nil
	}
	args, err := wire.ValuesFrom(r.GetArgs())
	if err != nil {
		return &proto.ExtensionResponse{Failure: wire.Failure(err)}, nil
	}
	res, err := f(ctx, args)
	if err != nil {
		return &proto.ExtensionResponse{Failure: wire.Failure(err)}, nil
	}
	v, err := wire.Value(res)
	if err != nil {
		return &proto.ExtensionResponse{Failure: wire.Failure(fmt.Errorf("extension %s: its result: %w", r.GetName(), err))}, nil
	}
	return &proto.ExtensionResponse{Result: v}, nil
}

func (s *server) Close(context.Context, *proto.Empty) (*proto.Result, error) {
	s.mu.Lock()
	st := s.st
	s.st, s.closed = nil, true
	s.mu.Unlock()
	if st == nil {
		return &proto.Result{}, nil
	}
	return &proto.Result{Failure: wire.Failure(st.Close())}, nil
}

func (s *server) History(ctx context.Context, r *proto.HistoryRequest) (*proto.HistoryResponse, error) {
	st, err := s.storage()
	if err != nil {
		return &proto.HistoryResponse{Failure: wire.Failure(err)}, nil
	}
	hist, err := st.History(ctx, stack.Oid(r.GetOid()), int(r.GetSize()))
	resp := &proto.HistoryResponse{Failure: wire.Failure(err)}
	for _, h := range hist {
		resp.Entries = append(resp.Entries, &proto.HistoryEntry{Tid: uint64(h.Tid), User: h.User, Description: h.Description, Extension: h.Extension, Size: int64(h.Size)})
	}
	return resp, nil
}

func (s *server) Info(ctx context.Context, _ *proto.Empty) (*proto.InfoResponse, error) {
	st, err := s.storage()
	if err != nil {
		return &proto.InfoResponse{Failure: wire.Failure(err)}, nil
	}
	info, err := st.Info(ctx)
	return &proto.InfoResponse{Name: info.Name, Length: info.Length, Size: info.Size, Failure: wire.Failure(err)}, nil
}

// Watch forwards the storage's events until the host ends the stream or
// the storage closes the channel.
func (s *server) Watch(_ *proto.Empty, stream proto.Storage_WatchServer) error {
	st, err := s.storage()
	if err != nil {
		return wire.Status(err)
	}
	ch := make(chan stack.Event, 64)
	at0 := st.Watch(ch)
	defer st.Unwatch(ch)
	if err := stream.Send(&proto.EventMessage{Start: true, Tid: uint64(at0)}); err != nil {
		return err
	}
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return wire.Status(errNotOpen)
			}
			if err := stream.Send(&proto.EventMessage{Tid: uint64(ev.Tid), Oids: wire.Oids(ev.Oids), Reset_: ev.Reset}); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return nil
		}
	}
}

func (s *server) StoreBlob(stream proto.Storage_StoreBlobServer) error {
	return stream.SendAndClose(&proto.Result{Failure: wire.Failure(s.receiveBlob(stream, false))})
}

func (s *server) RestoreBlob(stream proto.Storage_RestoreBlobServer) error {
	return stream.SendAndClose(&proto.Result{Failure: wire.Failure(s.receiveBlob(stream, true))})
}

// receiveBlob reads an upload into a file of the storage's blob staging
// directory and hands it to the transaction, which takes it over.
func (s *server) receiveBlob(stream proto.Storage_StoreBlobServer, restore bool) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	h := first.GetHeader()
	if h == nil {
		return errors.New("blob upload without a header")
	}
	st, err := s.storage()
	if err != nil {
		return err
	}
	b, ok := stack.AsBlobber(st)
	if !ok {
		return stack.ErrNotSupported
	}
	ts, err := s.txn(h.GetTxn())
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(b.BlobTempDir(), "plugin-upload-*")
	if err != nil {
		return err
	}
	path := f.Name()
	handed := false
	defer func() {
		if !handed {
			os.Remove(path)
		}
	}()
	for {
		part, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			f.Close()
			return err
		}
		if _, err := f.Write(part.GetChunk()); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	handed = true
	oid, data := stack.Oid(h.GetOid()), wire.Data(h.GetData(), h.GetDataNil())
	// In the transaction's queue, after its stores.
	return ts.do(func() error {
		bt, ok := ts.t.(stack.BlobTxn)
		switch {
		case ts.t == nil:
			os.Remove(path)
			return ts.failed
		case !ok:
			os.Remove(path)
			return stack.ErrNotSupported
		}
		if restore {
			return bt.RestoreBlob(ctx, oid, data, path, stack.Tid(h.GetPrevTxn()))
		}
		return bt.StoreBlob(ctx, oid, stack.Tid(h.GetSerial()), data, path)
	})
}

func (s *server) LoadBlob(r *proto.LoadSerialRequest, stream proto.Storage_LoadBlobServer) error {
	ctx := stream.Context()
	st, err := s.storage()
	if err != nil {
		return wire.Status(err)
	}
	b, ok := stack.AsBlobber(st)
	if !ok {
		return wire.Status(stack.ErrNotSupported)
	}
	path, err := b.LoadBlob(ctx, stack.Oid(r.GetOid()), stack.Tid(r.GetSerial()))
	if err != nil {
		return wire.Status(err)
	}
	f, err := os.Open(path)
	if err != nil {
		return wire.Status(err)
	}
	defer f.Close()
	buf := make([]byte, wire.ChunkSize)
	for {
		n, err := io.ReadFull(f, buf)
		if n > 0 {
			if serr := stream.Send(&proto.BlobChunk{Chunk: buf[:n]}); serr != nil {
				return serr
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return wire.Status(err)
		}
	}
}

func (s *server) Iterate(r *proto.IterateRequest, stream proto.Storage_IterateServer) error {
	ctx := stream.Context()
	st, err := s.storage()
	if err != nil {
		return wire.Status(err)
	}
	itr, ok := stack.AsIterator(st)
	if !ok {
		return wire.Status(stack.ErrNotSupported)
	}
	it, err := itr.Iterate(ctx, stack.Tid(r.GetStart()), stack.Tid(r.GetStop()))
	if err != nil {
		return wire.Status(err)
	}
	defer it.Close()
	for {
		rec, ok, err := it.Next(ctx)
		if err != nil {
			return wire.Status(err)
		}
		if !ok {
			return nil
		}
		hdr := &proto.TxnHeader{Meta: wire.TxnMeta(rec.TxnMeta), Records: int64(len(rec.Records))}
		if err := stream.Send(&proto.IterateItem{Item: &proto.IterateItem_Txn{Txn: hdr}}); err != nil {
			return err
		}
		for _, dr := range rec.Records {
			if err := stream.Send(&proto.IterateItem{Item: &proto.IterateItem_Record{Record: wire.Record(dr)}}); err != nil {
				return err
			}
		}
	}
}

func (s *server) RecordIterNext(ctx context.Context, r *proto.RecordIterNextRequest) (*proto.RecordIterNextResponse, error) {
	st, err := s.storage()
	if err != nil {
		return &proto.RecordIterNextResponse{Failure: wire.Failure(err)}, nil
	}
	ri, ok := stack.AsRecordIterator(st)
	if !ok {
		return &proto.RecordIterNextResponse{Failure: wire.Failure(stack.ErrNotSupported)}, nil
	}
	rec, next, more, err := ri.RecordIterNext(ctx, stack.Oid(r.GetFrom()))
	if err != nil {
		return &proto.RecordIterNextResponse{Failure: wire.Failure(err)}, nil
	}
	return &proto.RecordIterNextResponse{Record: wire.Record(rec), Next: uint64(next), More: more}, nil
}

func (s *server) UndoLog(ctx context.Context, r *proto.UndoLogRequest) (*proto.UndoLogResponse, error) {
	st, err := s.storage()
	if err != nil {
		return &proto.UndoLogResponse{Failure: wire.Failure(err)}, nil
	}
	u, ok := stack.AsUndoer(st)
	if !ok {
		return &proto.UndoLogResponse{Failure: wire.Failure(stack.ErrNotSupported)}, nil
	}
	infos, err := u.UndoLog(ctx, int(r.GetFirst()), int(r.GetLast()), nil)
	resp := &proto.UndoLogResponse{Failure: wire.Failure(err)}
	for _, i := range infos {
		resp.Entries = append(resp.Entries, &proto.UndoInfo{Id: i.ID, Tid: uint64(i.Tid), User: i.User, Description: i.Description, Extension: i.Extension, Size: int64(i.Size)})
	}
	return resp, nil
}

func (s *server) Pack(ctx context.Context, r *proto.PackRequest) (*proto.Result, error) {
	st, err := s.storage()
	if err == nil {
		p, ok := stack.AsPacker(st)
		if !ok {
			err = stack.ErrNotSupported
		} else {
			err = p.Pack(ctx, time.Unix(0, r.GetUnixNano()), r.GetGc())
		}
	}
	return &proto.Result{Failure: wire.Failure(err)}, nil
}
