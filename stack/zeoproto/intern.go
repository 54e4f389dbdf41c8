package zeoproto

// internedStrings are the strings ZEO messages carry over and over: the
// method names of docs/protocol.md §4 and the reply marker, each kept as
// a value of the value model. Decoding one of them returns the shared
// value instead of allocating a new string (and its interface box).
var internedStrings = func() map[string]any {
	m := map[string]any{}
	for _, s := range []string{
		ReplyName, "register", "get_info", "lastTransaction", "getInvalidations",
		"new_oids", "new_oid", "pack", "loadBefore", "loadSerial", "getTid", "history",
		"record_iternext", "sendBlob", "vote", "tpc_begin", "tpc_finish", "tpc_abort",
		"undoLog", "undoInfo", "undoa", "storea", "restorea", "deleteObject",
		"checkCurrentSerialInTransaction", "storeBlobStart", "storeBlobChunk",
		"storeBlobEnd", "storeBlobShared", "iterator_start", "iterator_next",
		"iterator_record_start", "iterator_record_next", "iterator_gc",
		"server_status", "ping", "getExtensionMethods", "set_client_label",
		"invalidateTransaction", "serialnos", "info", "receiveBlobStart",
		"receiveBlobChunk", "receiveBlobStop",
	} {
		m[s] = s
	}
	return m
}()

// internString returns b as a string value, without allocating when it
// is one of internedStrings.
func internString(b []byte) any {
	if v, ok := internedStrings[string(b)]; ok {
		return v
	}
	return string(b)
}
