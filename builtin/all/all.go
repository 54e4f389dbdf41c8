// Package all links every builtin storage type into a binary: importing it
// for its side effects registers <mappingstorage>, <filestorage> and the
// rest with the stack registry.
package all

import (
	_ "github.com/zeoraid/zeoraid/builtin/badgerstorage"  // <badgerstorage>
	_ "github.com/zeoraid/zeoraid/builtin/blobstorage"    // <blobstorage>
	_ "github.com/zeoraid/zeoraid/builtin/filestorage"    // <filestorage>
	_ "github.com/zeoraid/zeoraid/builtin/mappingstorage" // <mappingstorage>
	_ "github.com/zeoraid/zeoraid/builtin/raidstorage"    // <raidstorage>
	_ "github.com/zeoraid/zeoraid/builtin/zeoclient"      // <zeoclient>
)
