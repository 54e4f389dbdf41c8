package stack

import (
	"crypto/x509/pkix"
	"fmt"
	"net"
	"strings"
)

// DefaultManagementTrust is management-trust when <zeo> does not set it:
// connections through a unix socket and from the loopback interface.
const DefaultManagementTrust = "loopback unix"

// TrustRule is one word of <zeo> management-trust: which connections may
// make state-changing management calls (docs/operations.md).
type TrustRule struct {
	Word string // as written, for messages

	Any      bool       // "any": every connection
	Loopback bool       // "loopback": a TCP peer on 127.0.0.0/8 or ::1
	Unix     bool       // "unix": a connection through a unix socket
	Network  *net.IPNet // "10.0.0.0/8" or "192.0.2.7": a TCP peer in it
	// Subject ("cert:CN=ops,O=Example") is a TLS client certificate
	// subject: every attribute given must be in the verified certificate's
	// subject.
	Subject []SubjectAttr
}

// SubjectAttr is one attribute of a cert: rule, such as CN=ops.
type SubjectAttr struct{ Type, Value string }

// ManagementTrust is the parsed management-trust: a connection is trusted
// when any rule matches it. Empty (the word "none") trusts no connection.
type ManagementTrust []TrustRule

// String is the rules as written.
func (t ManagementTrust) String() string {
	if len(t) == 0 {
		return "none"
	}
	words := make([]string, len(t))
	for i, r := range t {
		words[i] = r.Word
	}
	return strings.Join(words, " ")
}

// subjectTypes are the attribute types a cert: rule may name.
var subjectTypes = map[string]bool{"CN": true, "O": true, "OU": true, "C": true, "L": true, "ST": true, "SERIALNUMBER": true}

// ParseManagementTrust reads a management-trust value: words separated by
// spaces, each "any", "none", "loopback", "unix", an IP network in CIDR
// notation or a single IP address, or "cert:" followed by comma-separated
// TYPE=VALUE subject attributes (CN, O, OU, C, L, ST, SERIALNUMBER). "any"
// and "none" stand alone.
func ParseManagementTrust(s string) (ManagementTrust, error) {
	words := strings.Fields(s)
	if len(words) == 0 {
		return nil, fmt.Errorf("management-trust is empty: give rules (such as %q), or none", DefaultManagementTrust)
	}
	var out ManagementTrust
	for _, w := range words {
		r := TrustRule{Word: w}
		lw := strings.ToLower(w)
		switch {
		case lw == "any" || lw == "none":
			if len(words) > 1 {
				return nil, fmt.Errorf("management-trust %q: %s stands alone", s, lw)
			}
			if lw == "none" {
				return ManagementTrust{}, nil
			}
			r.Any = true
		case lw == "loopback":
			r.Loopback = true
		case lw == "unix":
			r.Unix = true
		case strings.HasPrefix(lw, "cert:"):
			attrs, err := parseSubject(w[len("cert:"):])
			if err != nil {
				return nil, fmt.Errorf("management-trust rule %q: %v", w, err)
			}
			r.Subject = attrs
		case strings.Contains(w, "/"):
			_, n, err := net.ParseCIDR(w)
			if err != nil {
				return nil, fmt.Errorf("management-trust rule %q: not a network in CIDR notation (such as 10.0.0.0/8)", w)
			}
			r.Network = n
		default:
			ip := net.ParseIP(w)
			if ip == nil {
				return nil, fmt.Errorf("management-trust rule %q: want loopback, unix, any, none, a network (10.0.0.0/8), an IP address or cert:CN=NAME", w)
			}
			bits := 128
			if ip4 := ip.To4(); ip4 != nil {
				ip, bits = ip4, 32
			}
			r.Network = &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)}
		}
		out = append(out, r)
	}
	return out, nil
}

func parseSubject(s string) ([]SubjectAttr, error) {
	if s == "" {
		return nil, fmt.Errorf("no subject attributes after cert: (want cert:CN=NAME)")
	}
	var out []SubjectAttr
	for _, part := range strings.Split(s, ",") {
		typ, val, ok := strings.Cut(part, "=")
		typ = strings.ToUpper(typ)
		if !ok || val == "" {
			return nil, fmt.Errorf("subject attribute %q: want TYPE=VALUE", part)
		}
		if !subjectTypes[typ] {
			return nil, fmt.Errorf("subject attribute type %q: want CN, O, OU, C, L, ST or SERIALNUMBER", typ)
		}
		out = append(out, SubjectAttr{Type: typ, Value: val})
	}
	return out, nil
}

// MatchesSubject reports whether every attribute of the rule is in the
// certificate subject n (a multi-valued attribute matches any of its
// values).
func (r TrustRule) MatchesSubject(n pkix.Name) bool {
	if len(r.Subject) == 0 {
		return false
	}
	for _, a := range r.Subject {
		var have []string
		switch a.Type {
		case "CN":
			have = []string{n.CommonName}
		case "O":
			have = n.Organization
		case "OU":
			have = n.OrganizationalUnit
		case "C":
			have = n.Country
		case "L":
			have = n.Locality
		case "ST":
			have = n.Province
		case "SERIALNUMBER":
			have = []string{n.SerialNumber}
		}
		found := false
		for _, v := range have {
			if v == a.Value {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
