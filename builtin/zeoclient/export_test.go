package zeoclient

import "time"

// SetUpgradeInterval shortens the read-only fallback's search for a
// writable server in tests; it returns the restore function.
func SetUpgradeInterval(d time.Duration) (restore func()) {
	old := upgradeInterval
	upgradeInterval = d
	return func() { upgradeInterval = old }
}
