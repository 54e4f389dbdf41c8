package stack_test

import (
	"crypto/x509/pkix"
	"strings"
	"testing"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/zconfig"
)

func decodeZEO(t *testing.T, keys string) (*stack.Config, error) {
	t.Helper()
	root, err := zconfig.Parse("zeo.conf", []byte("<zeo>\n  address 8100\n"+keys+"</zeo>\n<mappingstorage/>\n"))
	if err != nil {
		t.Fatal(err)
	}
	return stack.DecodeConfig(root)
}

// management-trust and admin-address are <zeo> keys, decoded strictly:
// a bad rule is an error at its value's position.
func TestZEOManagementKeys(t *testing.T) {
	cfg, err := decodeZEO(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ZEO.AdminAddress != nil || cfg.ZEO.ManagementTrust != stack.DefaultManagementTrust {
		t.Fatalf("defaults: admin %v, trust %q", cfg.ZEO.AdminAddress, cfg.ZEO.ManagementTrust)
	}
	cfg, err = decodeZEO(t, "  admin-address 127.0.0.1:9100\n  management-trust unix 10.0.0.0/8 cert:CN=ops\n")
	if err != nil {
		t.Fatal(err)
	}
	if a := cfg.ZEO.AdminAddress; a == nil || a.String() != "127.0.0.1:9100" {
		t.Fatalf("admin-address %v", a)
	}
	tr, err := cfg.ZEO.Trust()
	if err != nil || tr.String() != "unix 10.0.0.0/8 cert:CN=ops" {
		t.Fatalf("trust %v, %v", tr, err)
	}
	_, err = decodeZEO(t, "  management-trust loopback 10.0.0.0/33\n")
	if err == nil || !strings.Contains(err.Error(), "zeo.conf:3:20:") || !strings.Contains(err.Error(), `"10.0.0.0/33"`) {
		t.Fatalf("bad rule: %v", err)
	}
	_, err = decodeZEO(t, "  management-trusts loopback\n")
	if err == nil || !strings.Contains(err.Error(), `did you mean 'management-trust'`) {
		t.Fatalf("misspelt key: %v", err)
	}
}

func TestTrustRuleSubject(t *testing.T) {
	tr, err := stack.ParseManagementTrust("cert:CN=ops,OU=zodb")
	if err != nil {
		t.Fatal(err)
	}
	r := tr[0]
	for _, tc := range []struct {
		name pkix.Name
		want bool
	}{
		{pkix.Name{CommonName: "ops", OrganizationalUnit: []string{"web", "zodb"}}, true},
		{pkix.Name{CommonName: "ops"}, false},
		{pkix.Name{CommonName: "Ops", OrganizationalUnit: []string{"zodb"}}, false},
	} {
		if got := r.MatchesSubject(tc.name); got != tc.want {
			t.Errorf("%v: %v, want %v", tc.name, got, tc.want)
		}
	}
}
