package server

import (
	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// extension turns a transaction's stored extension into the dict clients
// see. An extension that cannot be decoded shows as empty rather than
// failing the request (Python's undoLog does the same).
func (s *Server) extension(b []byte) zeoproto.Dict {
	d, err := zeoproto.ExtensionToWire(b)
	if err != nil {
		s.log.WithError(err).Warn("transaction extension cannot be decoded; shown as empty")
		return zeoproto.Dict{}
	}
	return d
}
