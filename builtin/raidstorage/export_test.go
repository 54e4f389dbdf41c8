package raidstorage

import (
	"testing"
	"time"
)

// SetAutoRecoverInterval shortens auto-recover's period for one test.
func SetAutoRecoverInterval(t *testing.T, d time.Duration) {
	old := autoRecoverEvery
	autoRecoverEvery = d
	t.Cleanup(func() { autoRecoverEvery = old })
}
