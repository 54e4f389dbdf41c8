package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/zeoraid/zeoraid/builtin/mappingstorage"
	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/server"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
	"github.com/zeoraid/zeoraid/zconfig"
)

// certPair makes a certificate signed by parent (self-signed when parent is
// nil) and writes cert and key as PEM files in dir.
func certPair(t *testing.T, dir, name string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	keyDer, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	must(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	must(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDer}), 0o600))
	return cert, key, certFile, keyFile
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// With <ssl>, clients must present a certificate signed by `authenticate`.
func TestServerTLSRequiresClientCertificates(t *testing.T) {
	dir := t.TempDir()
	ca, caKey, caFile, _ := certPair(t, dir, "ca", nil, nil)
	_, _, srvCert, srvKey := certPair(t, dir, "server", ca, caKey)
	_, _, cliCert, cliKey := certPair(t, dir, "client", ca, caKey)
	_, _, strangerCert, strangerKey := certPair(t, dir, "stranger", nil, nil)

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
