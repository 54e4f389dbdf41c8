// Command zeoraid-plugin-sqlite is the example storage plugin: it serves
// the <sqlitestorage> section type (a history-preserving ZODB storage in
// one SQLite file) to zeoraid, which starts it for
//
//	%import sqlite
//	<sqlitestorage main>
//	  path /var/lib/zeo/Data.sqlite
//	  blob-dir /var/lib/zeo/blobs
//	</sqlitestorage>
package main

import (
	"github.com/zeoraid/zeoraid/examples/plugins/sqlitestorage"
	"github.com/zeoraid/zeoraid/plugins/sdk"
)

func main() {
	sdk.Serve(sqlitestorage.Module)
}
