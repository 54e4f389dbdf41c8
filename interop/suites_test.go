//go:build interop

package interop

import (
	"testing"

	"github.com/zeoraid/zeoraid/interop/pyenv"
)

// mappingClasses run over <mappingstorage>: ZEO's GenericTests (ZODB's
// BasicStorage, PackableStorage, Synchronization, MTStorage,
// ReadOnlyStorage, RaceTests; ZEO's CommitLock, Thread and Misc tests),
// FullGenericTests plus HistoryStorage (undo, revisions, iteration,
// conflict resolution, IterationTests), client conflict resolution, the
// connection and timeout tests, and the invalidation stress tests.
var mappingClasses = []string{
	"ZEO.tests.testZEO:MappingStorageTests",
	"interop:MappingStorageFullTests",
	"ZEO.tests.testZEO:ClientConflictResolutionTests",
	"ZEO.tests.testZEO:ZRPCConnectionTests",
	"ZEO.tests.testConnection:MappingStorageConnectionTests",
	"ZEO.tests.testConnection:MappingStorageTimeoutTests",
	"interop:MappingStorageInvalidationTests",
}

// fileStorageClasses need <filestorage> (and <blobstorage> for the blob
// classes): the same suites over a Data.fs, persistence across server
// restarts, the invalidation queue, blobs (shared and not), recovery.
var fileStorageClasses = []string{
	"ZEO.tests.testZEO:FileStorageTests",
	"ZEO.tests.testZEO:FileStorageRecoveryTests",
	"ZEO.tests.testConnection:FileStorageReconnectionTests",
	"ZEO.tests.testConnection:FileStorageInvqTests",
}

var blobClasses = []string{
	"ZEO.tests.testZEO:BlobAdaptedFileStorageTests",
	"ZEO.tests.testZEO:BlobWritableCacheTests",
}

// doctestModules contribute the doctests of their test_suite(): server
// status, ruok, labels, unix sockets, blob doctests, fan-out, ….
var doctestModules = []string{
	"ZEO.tests.testZEO:doctests",
	"ZEO.tests.testConnection:doctests",
}

// TestZEOSuites runs ZEO's and ZODB's own tests against zeoraid, with the
// pickle encoding (Z5, everything) and msgpack (M5, the storage API suites
// without the encoding-independent doctests and connection tests, to stay
// within the time budget). Tests listed in expected_failures.txt may fail;
// any other failure, and any listed test that passes, fails this test.
func TestZEOSuites(t *testing.T) {
	t.Parallel()
	python := pyenv.Python(t)
	types := storageTypes(t)
	z5 := append([]string(nil), mappingClasses...)
	m5 := []string{
		"ZEO.tests.testZEO:MappingStorageTests",
		"interop:MappingStorageFullTests",
		"ZEO.tests.testZEO:ClientConflictResolutionTests",
		"interop:MappingStorageInvalidationTests",
	}
	if types["filestorage"] {
		z5 = append(z5, fileStorageClasses...)
		m5 = append(m5, "ZEO.tests.testZEO:FileStorageTests")
		if types["blobstorage"] {
			z5 = append(z5, blobClasses...)
			m5 = append(m5, "ZEO.tests.testZEO:BlobAdaptedFileStorageTests")
		}
	} else {
		t.Log("zeoraid has no <filestorage> yet: the FileStorage and blob classes are left out")
	}
	// Z5 runs as two processes at once: most tests wait on sockets and
	// timers, and one process would take about six minutes.
	z5b := append(z5[len(mappingClasses):], doctestModules...)
	z5 = z5[:len(mappingClasses)]
	runJobs(t, python, []suiteJob{{"Z5/mapping", Z5, z5}, {"Z5/file+doctests", Z5, z5b}, {"M5", M5, m5}})
}
