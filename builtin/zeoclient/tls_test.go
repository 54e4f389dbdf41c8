package zeoclient_test

import (
	"crypto/tls"
	"crypto/x509"
	"testing"

	"github.com/zeoraid/zeoraid/stack/tlstest"

	"github.com/zeoraid/zeoraid/builtin/zeoclient"
	"github.com/zeoraid/zeoraid/stack/server"
	"github.com/zeoraid/zeoraid/zconfig"
)

// TestTLS connects through <ssl> to a zeoraid server that requires client
// certificates: the CA from authenticate verifies the server, the host
// name is checked unless check-hostname is off.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey, caFile, _ := tlstest.Issue(t, dir, "ca", nil, nil)
	_, _, srvCert, srvKey := tlstest.Issue(t, dir, "server", ca, caKey)
	_, _, cliCert, cliKey := tlstest.Issue(t, dir, "client", ca, caKey)
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
	_, _, strangerCA, _ := tlstest.Issue(t, t.TempDir(), "stranger", nil, nil)
	stranger := good
	stranger.Authenticate = strangerCA
	if _, err := zeoclientOpen(t, withSSL(stranger)); err == nil {
		t.Fatal("a server not signed by authenticate was accepted")
	}
}
