package zeoclient_test

import (
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

	"github.com/zeoraid/zeoraid/builtin/zeoclient"
	"github.com/zeoraid/zeoraid/stack/server"
	"github.com/zeoraid/zeoraid/zconfig"
)

// issue makes a key and a certificate for 127.0.0.1 and zeo.example,
// signed by ca (self-signed CA when ca is nil), written as PEM files.
func issue(t *testing.T, dir, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (cert *x509.Certificate, key *ecdsa.PrivateKey, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"zeo.example"},
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	if ca == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		ca, caKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ = x509.ParseCertificate(der)
	keyDer, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDer}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key, certFile, keyFile
}

// TestTLS connects through <ssl> to a zeoraid server that requires client
// certificates: the CA from authenticate verifies the server, the host
// name is checked unless check-hostname is off.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey, caFile, _ := issue(t, dir, "ca", nil, nil)
	_, _, srvCert, srvKey := issue(t, dir, "server", ca, caKey)
	_, _, cliCert, cliKey := issue(t, dir, "client", ca, caKey)
	pair, err := tls.LoadX509KeyPair(srvCert, srvKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	addr := goServerWith(t, newMapping(), server.Options{Log: quiet(), TLS: &tls.Config{
		Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool,
	}})
	withSSL := func(ssl zeoclient.SSLOptions) zeoclient.Options {
		o := options(t, "1", addr)
		o.SSL = &ssl
		return o
	}
	good := zeoclient.SSLOptions{Certificate: zconfig.ExistingDirPath(cliCert), Key: zconfig.ExistingDirPath(cliKey), Authenticate: caFile, CheckHostname: true}
	s := open(t, withSSL(good))
	commit(t, s, store{1, 0, "over tls"})

	named := good
	named.ServerHostname = "zeo.example"
	open(t, withSSL(named))

	wrong := good
	wrong.ServerHostname = "other.example"
	if _, err := zeoclientOpen(t, withSSL(wrong)); err == nil {
		t.Fatal("a server certificate for another host name was accepted")
	}
	wrong.CheckHostname = false
	open(t, withSSL(wrong))

	noCert := good
	noCert.Certificate, noCert.Key = "", ""
	if _, err := zeoclientOpen(t, withSSL(noCert)); err == nil {
		t.Fatal("connected without the client certificate the server requires")
	}
	_, _, strangerCA, _ := issue(t, t.TempDir(), "stranger", nil, nil)
	stranger := good
	stranger.Authenticate = strangerCA
	if _, err := zeoclientOpen(t, withSSL(stranger)); err == nil {
		t.Fatal("a server not signed by authenticate was accepted")
	}
}
