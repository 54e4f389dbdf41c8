package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/stack/tlstest"

	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/server"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
	"github.com/zeoraid/zeoraid/zconfig"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// With <ssl>, clients must present a certificate signed by `authenticate`.
func TestServerTLSRequiresClientCertificates(t *testing.T) {
	dir := t.TempDir()
	ca, caKey, caFile, _ := tlstest.Issue(t, dir, "ca", nil, nil)
	_, _, srvCert, srvKey := tlstest.Issue(t, dir, "server", ca, caKey)
	_, _, cliCert, cliKey := tlstest.Issue(t, dir, "client", ca, caKey)
	_, _, strangerCert, strangerKey := tlstest.Issue(t, dir, "stranger", nil, nil)

	conf, err := serverTLS(&stack.SSLOptions{
		Certificate: zconfig.ExistingDirPath(srvCert), Key: zconfig.ExistingDirPath(srvKey), Authenticate: caFile,
	})
	must(t, err)
	srv := server.New([]*stack.Mount{stack.NewMount("1", mappingstorage.New("tls", nil))}, server.Options{TLS: conf})
	l, err := server.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	go srv.Serve(l)
	defer srv.Shutdown(context.Background())

	roots := x509.NewCertPool()
	roots.AddCert(ca)
	dial := func(certFile, keyFile string) error {
		cfg := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
		if certFile != "" {
			pair, err := tls.LoadX509KeyPair(certFile, keyFile)
			must(t, err)
			cfg.Certificates = []tls.Certificate{pair}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := zeoproto.Dial(ctx, "tcp", l.Addr().String(), zeoproto.ClientOptions{TLS: cfg})
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Register(ctx, "1", false)
		return err
	}
	if err := dial(cliCert, cliKey); err != nil {
		t.Fatalf("client with a CA-signed certificate: %v", err)
	}
	if err := dial("", ""); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	if err := dial(strangerCert, strangerKey); err == nil {
		t.Fatal("a client with an unknown certificate was served")
	}
}
