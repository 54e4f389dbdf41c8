package raidstorage

import (
	"testing"
	"time"
)

// Expected is how many of the RAID's own tids child name has yet to
// announce.
func Expected(r *Storage, name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byName[name].expect)
}

// SetAutoRecoverInterval shortens auto-recover's period for one test.
func SetAutoRecoverInterval(t *testing.T, d time.Duration) {
	old := autoRecoverEvery
	autoRecoverEvery = d
	t.Cleanup(func() { autoRecoverEvery = old })
}
