// Package zeoclient is the <zeoclient> storage section: a node of the
// storage tree that is a remote ZEO 5/6 server (Python runzeo, or another
// zeoraid), reached over stack/zeoproto's client connection.
//
// The node connects to the configured addresses in order, registers on the
// remote storage, and keeps the connection up: when it drops, every call
// fails at once with an error that names the address (a backend failure
// for stack.IsBackendFailure) and the node reconnects in the background
// with a growing delay. After a reconnection it catches up with the
// commits it missed (getInvalidations, or iterating the remote storage
// when the server's queue does not reach back) before it serves cached
// loads again, and publishes them as Watch events, so the events a watcher
// sees stay the complete, ordered list of commits.
//
// Commits follow ZEO's client side of the two-phase commit (docs/protocol.md
// §6.4): tpc_begin is sent at Begin; stores are buffered (a second write of
// an oid replaces the first, as the contract wants) and sent, asynchronous,
// at Vote; vote returns the write conflicts (as stack.Conflicts with the
// rejected data when the server returns conflict dicts, as the typed error
// otherwise), tpc_finish the tid. One transaction at a time runs on a node:
// Begin waits for the previous one to end.
//
// An optional load cache (cache-size bytes, 0 disables it) keeps current
// and historical revisions; it is exactly as correct as no cache: every
// invalidation is applied to it before the commit that caused it is
// published, and a load reply that raced with an invalidation of its
// object is not cached as current (ZEO issue 155, from the client side).
package zeoclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

// Options are the keys of a <zeoclient> section (ZODB's component.xml,
// docs/configuration.md §4.4).
type Options struct {
	Server             []zconfig.ConnectAddress `zconfig:"server,required" doc:"address of the ZEO server (host:port, port, or a Unix socket path); repeat for fail-over, tried in order"`
	Storage            string                   `zconfig:"storage,default=1" doc:"name of the storage on the server"`
	CacheSize          zconfig.ByteSize         `zconfig:"cache-size,default=20MB" doc:"size of the in-memory load cache; 0 disables it"`
	Name               string                   `zconfig:"name" doc:"name reported by get_info (default: the server addresses and storage)"`
	Client             string                   `zconfig:"client" doc:"persistent cache name: accepted, but zeoraid keeps its cache in memory only"`
	Var                string                   `zconfig:"var" doc:"directory of the persistent cache: accepted, unused (see client)"`
	Wait               bool                     `zconfig:"wait,default=true" doc:"at start-up, wait for the first connection (fail if none); off: start disconnected and connect in the background"`
	ReadOnly           bool                     `zconfig:"read-only" doc:"register read-only; every write fails with ReadOnlyError"`
	ReadOnlyFallback   bool                     `zconfig:"read-only-fallback" doc:"register writable, and read-only when the server refuses"`
	BlobDir            zconfig.ExistingDirPath  `zconfig:"blob-dir" doc:"directory for blobs: a private download cache, or the server's own blob directory with shared-blob-dir"`
	SharedBlobDir      bool                     `zconfig:"shared-blob-dir" doc:"blob-dir is the server's blob directory (bushy layout), shared with it"`
	BlobCacheSize      *zconfig.ByteSize        `zconfig:"blob-cache-size" doc:"bound of the private blob cache (unbounded when absent)"`
	BlobCacheSizeCheck int                      `zconfig:"blob-cache-size-check,default=10" doc:"percent of blob-cache-size downloaded between two cache size checks"`
	ClientLabel        string                   `zconfig:"client-label" doc:"label the server shows in its logs (set_client_label)"`

	MinDisconnectPoll     *int  `zconfig:"min-disconnect-poll" doc:"ignored by ZEO 5 and zeoraid (accepted with a warning)"`
	MaxDisconnectPoll     *int  `zconfig:"max-disconnect-poll" doc:"ignored by ZEO 5 and zeoraid (accepted with a warning)"`
	DropCacheRatherVerify *bool `zconfig:"drop-cache-rather-verify" doc:"ignored by ZEO 5 and zeoraid (accepted with a warning)"`

	Username *string `zconfig:"username" doc:"refused: ZEO 5 removed authentication; use <ssl>"`
	Password *string `zconfig:"password" doc:"refused: ZEO 5 removed authentication; use <ssl>"`
	Realm    *string `zconfig:"realm" doc:"refused: ZEO 5 removed authentication; use <ssl>"`

	SSL *SSLOptions `zconfig:"ssl,section" doc:"connect over TLS"`
}

// SSLOptions is the client <ssl> subsection (ZEO's client schema).
type SSLOptions struct {
	Certificate    zconfig.ExistingDirPath `zconfig:"certificate" doc:"PEM client certificate (may include the key); ZEO servers require one"`
	Key            zconfig.ExistingDirPath `zconfig:"key" doc:"PEM private key, if not inside the certificate file"`
	Authenticate   string                  `zconfig:"authenticate" doc:"CA file or directory that verifies the server; the system's roots when absent"`
	CheckHostname  bool                    `zconfig:"check-hostname,default=true" doc:"verify that the server certificate names the server host"`
	ServerHostname string                  `zconfig:"server-hostname" doc:"host name expected in the server certificate (default: the host of the address)"`
}

func init() {
	stack.Register(stack.Module{
		Type:    "zeoclient",
		Doc:     "A remote ZEO 5/6 server (Python runzeo or zeoraid) as a storage: reconnection, invalidations as events, blobs, restore, iteration and a load cache.",
		Options: &Options{},
		Open:    openNode,
	})
}

func openNode(ctx context.Context, n *stack.Node, opts any) (stack.Storage, error) {
	o, ok := opts.(*Options)
	if !ok {
		return nil, fmt.Errorf("zeoclient: options of type %T, want *Options", opts)
	}
	return Open(ctx, n.Path, *o, n.Log)
}

// errAuthentication explains why username/password/realm are refused.
var errAuthentication = errors.New("username, password and realm are not supported: ZEO 5 removed authentication; use an <ssl> section (TLS with client certificates) instead")

// check validates the options that decoding cannot.
func (o *Options) check() error {
	if o.Username != nil || o.Password != nil || o.Realm != nil {
		return errAuthentication
	}
	if len(o.Server) == 0 {
		return errors.New("no server address")
	}
	if o.SharedBlobDir && o.BlobDir == "" {
		return errors.New("shared-blob-dir needs blob-dir")
	}
	if o.CacheSize < 0 {
		return errors.New("cache-size must not be negative")
	}
	if o.BlobCacheSizeCheck < 0 || o.BlobCacheSizeCheck > 100 {
		return fmt.Errorf("blob-cache-size-check %d is not a percentage", o.BlobCacheSizeCheck)
	}
	return nil
}

// tlsConfig builds the client TLS configuration for the server at addr.
func (o *SSLOptions) tlsConfig(addr string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.Certificate != "" {
		key := string(o.Key)
		if key == "" {
			key = string(o.Certificate)
		}
		cert, err := tls.LoadX509KeyPair(string(o.Certificate), key)
		if err != nil {
			return nil, fmt.Errorf("ssl certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if o.Authenticate != "" {
		pool, err := loadCAs(o.Authenticate)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	cfg.ServerName = o.ServerHostname
	if cfg.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			cfg.ServerName = host
		}
	}
	if !o.CheckHostname {
		// Verify the chain, not the name.
		roots := cfg.RootCAs
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
			return err
		}
	}
	return cfg, nil
}

// loadCAs reads a PEM CA file, or every file of a CA directory.
func loadCAs(path string) (*x509.CertPool, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("ssl authenticate: %w", err)
	}
	files := []string{path}
	if fi.IsDir() {
		ents, err := os.ReadDir(path)
		if err != nil {
			return nil, fmt.Errorf("ssl authenticate: %w", err)
		}
		files = files[:0]
		for _, e := range ents {
			if !e.IsDir() {
				files = append(files, filepath.Join(path, e.Name()))
			}
		}
	}
	pool := x509.NewCertPool()
	found := false
	for _, f := range files {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("ssl authenticate: %w", err)
		}
		if pool.AppendCertsFromPEM(pem) {
			found = true
		}
	}
	if !found {
		return nil, fmt.Errorf("ssl authenticate %s: no PEM certificate found", path)
	}
	return pool, nil
}
