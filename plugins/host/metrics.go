package host

import "github.com/zeoraid/zeoraid/stack"

var _ stack.RestartReporter = (*Storage)(nil)

// Restarts implements stack.RestartReporter: how many times the node's
// plugin process was restarted after it was lost (the admin endpoint's
// zeoraid_plugin_restarts_total).
func (s *Storage) Restarts() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restarts
}
