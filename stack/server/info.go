package server

import (
	"context"
	"fmt"

	"github.com/zeoraid/zeoraid/stack"
	"github.com/zeoraid/zeoraid/stack/zeoproto"
)

// Names returns the storage names served now, sorted.
func (s *Server) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.names...)
}

// Serving reports whether the server accepts connections: Serve runs on a
// listener and Shutdown has not begun.
func (s *Server) Serving() bool {
	if s.closing.Load() {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.listeners {
		if !s.stopped[l] {
			return true
		}
	}
	return false
}

// Info returns what `zeoraid ctl info --json` prints for the storage name
// (docs/operations.md): a RAID's raid_info, with "storage" (the name),
// "server" (server_status) and, when the server offers reload_status,
// "last_reload". The admin endpoint's /status shows it for every storage.
func (s *Server) Info(ctx context.Context, name string) (map[string]any, error) {
	ms := s.mount(name)
	if ms == nil {
		return nil, fmt.Errorf("no storage named %q", name)
	}
	out := map[string]any{}
	if ext, ok := ms.mount.Storage().(stack.Extender); ok {
		if f, ok := ext.Extensions()["raid_info"]; ok {
			r, err := f(ctx, nil)
			if err != nil {
				return nil, fmt.Errorf("storage %q: raid_info: %w", name, err)
			}
			if m, ok := zeoproto.Plain(r).(map[string]any); ok {
				out = m
			}
		}
	}
	out["storage"] = name
	out["server"] = zeoproto.Plain(ms.status())
	if f, ok := s.opts.Extensions["reload_status"]; ok {
		if r, err := f(ctx, nil); err == nil {
			out["last_reload"] = zeoproto.Plain(r)
		}
	}
	return out, nil
}
