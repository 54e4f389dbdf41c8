package server

import (
	"crypto/tls"
	"fmt"
	"net"

	"github.com/zeoraid/zeoraid/stack"
)

// defaultTrust is management-trust for Options that set none.
var defaultTrust, _ = stack.ParseManagementTrust(stack.DefaultManagementTrust)

// trust returns the management-trust rules in force.
func (s *Server) trust() stack.ManagementTrust {
	if t := s.options().Trust; t != nil {
		return t
	}
	return defaultTrust
}

// privileged reports whether the extension call name on storage st
// changes state: every extension call does unless its provider declares
// it read-only (stack.ReadOnlyExtender, Options.ReadOnlyExtensions).
func (s *Server) privileged(name string, st stack.Storage) bool {
	if _, own := s.opts.Extensions[name]; own {
		for _, n := range s.opts.ReadOnlyExtensions {
			if n == name {
				return false
			}
		}
		return true
	}
	if ro, ok := st.(stack.ReadOnlyExtender); ok {
		for _, n := range ro.ReadOnlyExtensions() {
			if n == name {
				return false
			}
		}
	}
	return true
}

// trusted returns the rule of rules that trusts connection nc, or false.
func trusted(rules stack.ManagementTrust, nc net.Conn) (stack.TrustRule, bool) {
	unix := nc.LocalAddr().Network() == "unix"
	var ip net.IP
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		ip = a.IP
	}
	var state *tls.ConnectionState
	if tc, ok := nc.(*tls.Conn); ok {
		st := tc.ConnectionState()
		state = &st
	}
	for _, r := range rules {
		switch {
		case r.Any,
			r.Unix && unix,
			r.Loopback && ip != nil && ip.IsLoopback(),
			r.Network != nil && ip != nil && r.Network.Contains(ip):
			return r, true
		case len(r.Subject) > 0 && state != nil && len(state.VerifiedChains) > 0:
			if r.MatchesSubject(state.VerifiedChains[0][0].Subject) {
				return r, true
			}
		}
	}
	return stack.TrustRule{}, false
}

// checkTrust refuses the management call name on a connection no rule of
// management-trust trusts, with an error naming the rules and the peer.
func (c *conn) checkTrust(name string) error {
	if !c.srv.privileged(name, c.storage()) {
		return nil
	}
	rules := c.srv.trust()
	if _, ok := trusted(rules, c.nc); ok {
		return nil
	}
	c.log().WithField("method", name).Warn(c.labelled("management call refused: untrusted connection"))
	return &stack.StorageError{Msg: fmt.Sprintf(
		"%s refused: it changes the server's state and is accepted only from connections that <zeo> management-trust (%s) trusts; this connection (%s) matches no rule",
		name, rules, c.describePeer())}
}

// describePeer says what a trust rule would see of the connection.
func (c *conn) describePeer() string {
	if c.nc.LocalAddr().Network() == "unix" {
		return "unix socket"
	}
	d := "from " + c.peer
	if tc, ok := c.nc.(*tls.Conn); ok {
		if st := tc.ConnectionState(); len(st.VerifiedChains) > 0 {
			d += ", certificate " + st.VerifiedChains[0][0].Subject.String()
		}
	}
	return d
}
