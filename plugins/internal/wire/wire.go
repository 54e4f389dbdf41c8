// Package wire is what both ends of the plugin protocol share: the
// go-plugin handshake, the gRPC plugin adapter, and the conversions between
// zeoraid's types (stack, zconfig) and the messages of plugins/proto. The
// SDK and the host import it; plugin authors never see it.
package wire

import (
	"context"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/zeoraid/zeoraid/plugins/proto"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

const (
	// ChunkSize is the size of one blob chunk on the wire, both ways.
	ChunkSize = 1 << 20
	// MaxMessage bounds one gRPC message on both sides: an object record
	// of 64 MiB fits with room for a conflict or a transaction's
	// metadata. gRPC's own default (4 MiB) is far too small for ZODB.
	MaxMessage = 128 << 20
	// UndoLogPage is how many undo entries the host asks for at a time
	// when it filters them itself (a match function cannot cross).
	UndoLogPage = 256
)

// Handshake is the go-plugin handshake of zeoraid's plugins. The protocol
// version itself is negotiated through VersionedPlugins (see Plugins).
var Handshake = goplugin.HandshakeConfig{
	MagicCookieKey:   proto.MagicCookieKey,
	MagicCookieValue: proto.MagicCookieValue,
}

// Plugins is the versioned plugin set for protocol version major, with
// server the plugin side's implementation (nil on the host).
func Plugins(major int, server proto.StorageServer) map[int]goplugin.PluginSet {
	return map[int]goplugin.PluginSet{major: {proto.PluginName: &GRPCPlugin{Impl: server}}}
}

// GRPCPlugin adapts the Storage service to go-plugin.
type GRPCPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	Impl proto.StorageServer
}

// GRPCServer registers the service on the plugin's gRPC server.
func (p *GRPCPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	proto.RegisterStorageServer(s, p.Impl)
	return nil
}

// GRPCClient returns the host's client of the service.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return proto.NewStorageClient(c), nil
}

// Pos converts a position.
func Pos(p zconfig.Pos) *proto.Pos {
	return &proto.Pos{File: p.File, Line: int32(p.Line), Col: int32(p.Col)}
}

// PosFrom converts a position back.
func PosFrom(p *proto.Pos) zconfig.Pos {
	return zconfig.Pos{File: p.GetFile(), Line: int(p.GetLine()), Col: int(p.GetCol())}
}

// Section converts a section with its keys and subsections.
func Section(s *zconfig.Section) *proto.Section {
	out := &proto.Section{Pos: Pos(s.Pos), End: Pos(s.End), Type: s.Type, Name: s.Name}
	for _, k := range s.Keys {
		out.Keys = append(out.Keys, &proto.SectionKey{Pos: Pos(k.Pos), Name: k.Name, Value: k.Value, ValuePos: Pos(k.ValuePos)})
	}
	for _, c := range s.Sections {
		out.Sections = append(out.Sections, Section(c))
	}
	return out
}

// SectionFrom converts a section back; nil becomes an empty section.
func SectionFrom(s *proto.Section) *zconfig.Section {
	out := &zconfig.Section{Pos: PosFrom(s.GetPos()), End: PosFrom(s.GetEnd()), Type: s.GetType(), Name: s.GetName()}
	for _, k := range s.GetKeys() {
		out.Keys = append(out.Keys, &zconfig.Key{Pos: PosFrom(k.GetPos()), Name: k.GetName(), Value: k.GetValue(), ValuePos: PosFrom(k.GetValuePos())})
	}
	for _, c := range s.GetSections() {
		out.Sections = append(out.Sections, SectionFrom(c))
	}
	return out
}

// Capabilities converts a storage's capabilities.
func Capabilities(c stack.Capabilities) *proto.Capabilities {
	return &proto.Capabilities{ReadOnly: c.ReadOnly, Iterate: c.Iterate, RecordIter: c.RecordIter,
		Restore: c.Restore, Undo: c.Undo, Pack: c.Pack, Blobs: c.Blobs, Delete: c.Delete}
}

// CapabilitiesFrom converts capabilities back.
func CapabilitiesFrom(c *proto.Capabilities) stack.Capabilities {
	return stack.Capabilities{ReadOnly: c.GetReadOnly(), Iterate: c.GetIterate(), RecordIter: c.GetRecordIter(),
		Restore: c.GetRestore(), Undo: c.GetUndo(), Pack: c.GetPack(), Blobs: c.GetBlobs(), Delete: c.GetDelete()}
}

// TxnMeta converts transaction metadata.
func TxnMeta(m stack.TxnMeta) *proto.TxnMeta {
	return &proto.TxnMeta{User: m.User, Description: m.Description, Extension: m.Extension, Tid: uint64(m.Tid), Status: uint32(m.Status)}
}

// TxnMetaFrom converts transaction metadata back.
func TxnMetaFrom(m *proto.TxnMeta) stack.TxnMeta {
	return stack.TxnMeta{User: m.GetUser(), Description: m.GetDescription(), Extension: m.GetExtension(),
		Tid: stack.Tid(m.GetTid()), Status: byte(m.GetStatus())}
}

// Record converts a data record; nil data (a deletion) is kept apart from
// empty data.
func Record(r stack.DataRecord) *proto.DataRecord {
	return &proto.DataRecord{Oid: uint64(r.Oid), Tid: uint64(r.Tid), Data: r.Data, DataNil: r.Data == nil, DataTxn: uint64(r.DataTxn)}
}

// RecordFrom converts a data record back.
func RecordFrom(r *proto.DataRecord) stack.DataRecord {
	return stack.DataRecord{Oid: stack.Oid(r.GetOid()), Tid: stack.Tid(r.GetTid()), Data: Data(r.GetData(), r.GetDataNil()), DataTxn: stack.Tid(r.GetDataTxn())}
}

// Data restores the difference between nil and empty data that protobuf
// does not keep.
func Data(b []byte, isNil bool) []byte {
	if isNil {
		return nil
	}
	if b == nil {
		return []byte{}
	}
	return b
}

// Oids converts oids to their wire form.
func Oids(oids []stack.Oid) []uint64 {
	out := make([]uint64, len(oids))
	for i, o := range oids {
		out[i] = uint64(o)
	}
	return out
}

// OidsFrom converts oids back; nil stays nil.
func OidsFrom(oids []uint64) []stack.Oid {
	if oids == nil {
		return nil
	}
	out := make([]stack.Oid, len(oids))
	for i, o := range oids {
		out[i] = stack.Oid(o)
	}
	return out
}

// KeyDocs converts an option schema.
func KeyDocs(docs []zconfig.KeyDoc) []*proto.Key {
	out := make([]*proto.Key, len(docs))
	for i, d := range docs {
		out[i] = &proto.Key{Name: d.Name, Datatype: d.Type, Default: d.Default, Doc: d.Doc, Required: d.Required, Multi: d.Multi, Section: d.Section}
	}
	return out
}

// KeyDocsFrom converts an option schema back.
func KeyDocsFrom(keys []*proto.Key) []zconfig.KeyDoc {
	out := make([]zconfig.KeyDoc, len(keys))
	for i, k := range keys {
		out[i] = zconfig.KeyDoc{Name: k.GetName(), Type: k.GetDatatype(), Default: k.GetDefault(), Doc: k.GetDoc(), Required: k.GetRequired(), Multi: k.GetMulti(), Section: k.GetSection()}
	}
	return out
}
