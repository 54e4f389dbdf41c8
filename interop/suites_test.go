//go:build interop

package interop

import (
	"testing"

	"github.com/zeoraid/zeoraid/interop/pyenv"
)

// zeoSuiteJobs are every test of ZEO's own test_suite()s that talks to a
// server process (testZEO, testConnection, testssl, testConfig,
// test_client_side_conflict_resolution, test_sync,
// test_client_credentials), at every level (FileStorageLoadDelayedTests is
// level 10), plus the classes ZEO defines but leaves out of its
// test_suite() (FileStorageTests, DemoStorageTests, the two hex classes)
// and two classes assembled in run_suites.py. Each job is one
// run_suites.py process of one to two minutes: the tests mostly wait on
// sockets and timers, so the jobs run at once (see runJobs).
var zeoSuiteJobs = []suiteJob{
	// ZODB's BasicStorage, PackableStorage, Synchronization, MTStorage,
	// ReadOnlyStorage and RaceTests and ZEO's CommitLock, Thread and Misc
	// tests (GenericTests); FullGenericTests plus HistoryStorage (undo,
	// revisions, iteration, conflict resolution); client-side conflict
	// resolution; the connection and timeout tests, also over TLS.
	{"Z5/mapping", Z5, []string{
		"ZEO.tests.testZEO:MappingStorageTests",
		"interop:MappingStorageFullTests",
		"ZEO.tests.testZEO:ClientConflictResolutionTests",
		"ZEO.tests.testZEO:ZRPCConnectionTests",
		"ZEO.tests.testConnection:MappingStorageConnectionTests",
		"ZEO.tests.testConnection:MappingStorageTimeoutTests",
		"ZEO.tests.testConnection:SSLConnectionTests",
	}},
	// ZEO's invalidation stress tests, over mappingstorage and (with the
	// connection tests) over filestorage.
	{"Z5/invalidation", Z5, []string{
		"interop:MappingStorageInvalidationTests",
		"ZEO.tests.testConnection:FileStorageConnectionTests",
	}},
	// FullGenericTests over a Data.fs, in the clear and over TLS, and
	// recovery (copyTransactionsFrom through restore). The last four
	// classes ask for storage sections zeoraid does not have and are
	// refused (expected_failures.txt).
	{"Z5/filestorage", Z5, []string{
		"ZEO.tests.testZEO:FileStorageTests",
		"ZEO.tests.testZEO:FileStorageSSLTests",
		"ZEO.tests.testZEO:FileStorageRecoveryTests",
		"ZEO.tests.testZEO:FileStorageLoadDelayedTests",
		"ZEO.tests.testZEO:FileStorageHexTests",
		"ZEO.tests.testZEO:FileStorageClientHexTests",
		"ZEO.tests.testZEO:DemoStorageTests",
	}},
	// Blobs (shared and not, with ZODB's blob undo tests), persistence
	// across server restarts, the invalidation queue, timeouts over a
	// Data.fs, and clients in forked processes.
	{"Z5/blobs+restarts", Z5, []string{
		"ZEO.tests.testZEO:BlobAdaptedFileStorageTests",
		"ZEO.tests.testZEO:BlobWritableCacheTests",
		"ZEO.tests.testZEO:ClientStorageNonSharedBlobsBlobUndoTests",
		"ZEO.tests.testZEO:ClientStorageSharedBlobsBlobUndoTests",
		"ZEO.tests.testConnection:FileStorageReconnectionTests",
		"ZEO.tests.testConnection:FileStorageInvqTests",
		"ZEO.tests.testConnection:FileStorageTimeoutTests",
		"ZEO.tests.testZEO:MultiprocessingTests",
	}},
	// Every doctest and doctest file of testZEO and testConnection
	// (server_status, ruok, labels, unix sockets, ZODB's blob doctests for
	// shared and non-shared blob dirs, IExternalGC, IterationTests,
	// zeo-fan-out, …) and the small modules' server tests.
	{"Z5/doctests+modules", Z5, []string{
		"ZEO.tests.testZEO:doctests",
		"ZEO.tests.testConnection:doctests",
		"ZEO.tests.testssl:SSLConfigTest",
		"ZEO.tests.testConfig:ZEOConfigTest",
		"ZEO.tests.test_client_side_conflict_resolution:ClientSideConflictResolutionTests",
		"ZEO.tests.test_sync:SyncTests",
		"ZEO.tests.test_client_credentials:ClientAuthTests",
	}},
	// msgpack: the storage API classes (the doctests, connection and TLS
	// tests do the same calls in either encoding).
	{"M5/mapping", M5, []string{
		"ZEO.tests.testZEO:MappingStorageTests",
		"interop:MappingStorageFullTests",
		"ZEO.tests.testZEO:ClientConflictResolutionTests",
		"interop:MappingStorageInvalidationTests",
	}},
	{"M5/filestorage", M5, []string{
		"ZEO.tests.testZEO:FileStorageTests",
		"ZEO.tests.testZEO:BlobAdaptedFileStorageTests",
	}},
}

// TestZEOSuites runs ZEO's and ZODB's own tests against zeoraid (ZEO 6.2,
// ZODB 6.4). Tests listed in expected_failures.txt must fail; any other
// failure, a listed test that passes, and a listed entry that matches no
// test that ran fail this test.
func TestZEOSuites(t *testing.T) {
	t.Parallel()
	python := pyenv.Python(t)
	types := storageTypes(t)
	for _, want := range []string{"mappingstorage", "filestorage", "blobstorage"} {
		if !types[want] {
			t.Fatalf("zeoraid has no <%s>, which ZEO's suites use", want)
		}
	}
	if results := runJobs(t, python, "", zeoSuiteJobs); results != nil {
		t.Run("expected_failures.txt", func(t *testing.T) {
			checkListUsed(t, "", zeoSuiteJobs, results)
		})
	}
}
