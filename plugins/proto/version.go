// Package proto is the versioned gRPC contract between zeoraid and its
// storage plugins: the messages and the Storage service of storage.proto,
// generated, and the protocol's major version.
//
// Regenerate after editing storage.proto (protoc and the two Go plugins
// must be installed; CONTRIBUTING.md says which):
//
//	go generate ./plugins/proto
package proto

//go:generate protoc --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative storage.proto

// Major is the protocol's major version. It changes only with an
// incompatible change of storage.proto (and then the proto package name
// changes with it); the handshake refuses a plugin of another major
// version, naming both. Version 1 made every storage call a unary RPC;
// version 2 sends the frequent ones on one multiplexed stream (Calls),
// which a version 1 plugin does not serve.
const Major = 2

// MagicCookieKey and MagicCookieValue mark a process started by zeoraid: a
// plugin started by hand sees they are missing and says it is meant to be
// loaded with %import instead of serving.
const (
	MagicCookieKey   = "ZEORAID_PLUGIN"
	MagicCookieValue = "a storage plugin of zeoraid; load it with %import in zeo.conf"
)

// PluginName is the name the storage service is dispensed under.
const PluginName = "storage"
