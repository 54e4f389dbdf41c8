package zeoproto

import (
	"encoding/hex"
	"strings"

	"github.com/zeoraid/zeoraid/stack"
)

// Golden frames (docs/protocol.md §3.8): real captures of Python ZEO 6 and
// ZEO's own encoder), with the message each one holds.

func unhex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

var (
	tid22  = stack.Tid(0x03f8a4b982222222).Bytes()
	tid23  = stack.Tid(0x03f8a4b982222223).Bytes()
	oid0   = stack.Oid(0).Bytes()
	oid1   = stack.Oid(1).Bytes()
	oid2   = stack.Oid(2).Bytes()
	oid3   = stack.Oid(3).Bytes()
	oid5   = stack.Oid(5).Bytes()
	oid7   = stack.Oid(7).Bytes()
	maxtid = stack.MaxTid.Bytes()
	txnID  = int64(140234567890123)
)

type vector struct {
	name  string
	codec Codec
	frame string
	msg   Message
}

var conflictPayload = Dict{
	{"message", "database conflict error"},
	{"oid", oid1},
	{"class_name", nil},
	{"serials", Tuple{tid23, tid22}},
}

var vectors = []vector{
	{"B register call", Pickle, "00 00 00 1e 80 03 28 4b 01 89 58 08 00 00 00 72 65 67 69 73 74 65 72 58 01 00 00 00 31 4b 00 86 74 2e",
		Message{int64(1), FlagSync, "register", Tuple{"1", int64(0)}}},
	{"C register reply", Pickle, "00 00 00 1e 80 03 28 4b 01 4b 00 58 06 00 00 00 2e 72 65 70 6c 79 43 08 03 f8 a4 b9 82 22 22 22 74 2e",
		Message{int64(1), FlagSync, ".reply", tid22}},
	{"C register reply z64", Pickle, "00 00 00 1e 80 03 28 4b 01 4b 00 58 06 00 00 00 2e 72 65 70 6c 79 43 08 00 00 00 00 00 00 00 00 74 2e",
		Message{int64(1), FlagSync, ".reply", oid0}},
	{"D loadBefore call", Pickle, "00 00 00 3f 80 03 28 43 08 00 00 00 00 00 00 00 01 43 08 7f ff ff ff ff ff ff ff 86 89 58 0a 00 00 00 6c 6f 61 64 42 65 66 6f 72 65 43 08 00 00 00 00 00 00 00 01 43 08 7f ff ff ff ff ff ff ff 86 74 2e",
		Message{Tuple{oid1, maxtid}, FlagSync, "loadBefore", Tuple{oid1, maxtid}}},
	{"E loadBefore reply", Pickle, "00 00 00 3b 80 03 28 43 08 00 00 00 00 00 00 00 01 43 08 7f ff ff ff ff ff ff ff 86 4b 00 58 06 00 00 00 2e 72 65 70 6c 79 43 06 50 49 43 4b 4c 45 43 08 03 f8 a4 b9 82 22 22 22 4e 87 74 2e",
		Message{Tuple{oid1, maxtid}, FlagSync, ".reply", Tuple{[]byte("PICKLE"), tid22, nil}}},
	{"E loadBefore reply None", Pickle, "00 00 00 28 80 03 28 43 08 00 00 00 00 00 00 00 01 43 08 03 f8 a4 b9 82 22 22 22 86 4b 00 58 06 00 00 00 2e 72 65 70 6c 79 4e 74 2e",
		Message{Tuple{oid1, tid22}, FlagSync, ".reply", nil}},
	{"F invalidateTransaction", Pickle, "00 00 00 44 80 03 28 4b 00 88 58 15 00 00 00 69 6e 76 61 6c 69 64 61 74 65 54 72 61 6e 73 61 63 74 69 6f 6e 43 08 03 f8 a4 b9 82 22 22 23 5d 28 43 08 00 00 00 00 00 00 00 01 43 08 00 00 00 00 00 00 00 07 65 86 74 2e",
		Message{int64(0), FlagAsync, "invalidateTransaction", Tuple{tid23, []any{oid1, oid7}}}},
	{"G POSKeyError reply", Pickle, "00 00 00 42 80 03 28 4b 05 4b 02 58 06 00 00 00 2e 72 65 70 6c 79 58 1d 00 00 00 5a 4f 44 42 2e 50 4f 53 45 78 63 65 70 74 69 6f 6e 2e 50 4f 53 4b 65 79 45 72 72 6f 72 43 08 00 00 00 00 00 00 00 05 85 86 74 2e",
		Message{int64(5), FlagError, ".reply", Tuple{ClassPOSKeyError, Tuple{oid5}}}},
	{"G POSKeyError reply tuple msgid", Pickle, "00 00 00 55 80 03 28 43 08 00 00 00 00 00 00 00 00 43 08 00 00 00 00 00 00 00 01 86 4b 02 58 06 00 00 00 2e 72 65 70 6c 79 58 1d 00 00 00 5a 4f 44 42 2e 50 4f 53 45 78 63 65 70 74 69 6f 6e 2e 50 4f 53 4b 65 79 45 72 72 6f 72 43 08 00 00 00 00 00 00 00 00 85 86 74 2e",
		Message{Tuple{oid0, oid1}, FlagError, ".reply", Tuple{ClassPOSKeyError, Tuple{oid0}}}},
	{"H ConflictError reply", Pickle, "00 00 00 a7 80 03 28 4b 09 4b 02 58 06 00 00 00 2e 72 65 70 6c 79 58 1f 00 00 00 5a 4f 44 42 2e 50 4f 53 45 78 63 65 70 74 69 6f 6e 2e 43 6f 6e 66 6c 69 63 74 45 72 72 6f 72 7d 28 58 07 00 00 00 6d 65 73 73 61 67 65 58 17 00 00 00 64 61 74 61 62 61 73 65 20 63 6f 6e 66 6c 69 63 74 20 65 72 72 6f 72 58 03 00 00 00 6f 69 64 43 08 00 00 00 00 00 00 00 01 58 0a 00 00 00 63 6c 61 73 73 5f 6e 61 6d 65 4e 58 07 00 00 00 73 65 72 69 61 6c 73 43 08 03 f8 a4 b9 82 22 22 23 43 08 03 f8 a4 b9 82 22 22 22 86 75 86 74 2e",
		Message{int64(9), FlagError, ".reply", Tuple{ClassConflictError, conflictPayload}}},
	{"I ReadOnlyError reply", Pickle, "00 00 00 3a 80 03 28 4b 01 4b 02 58 06 00 00 00 2e 72 65 70 6c 79 58 1f 00 00 00 5a 4f 44 42 2e 50 4f 53 45 78 63 65 70 74 69 6f 6e 2e 52 65 61 64 4f 6e 6c 79 45 72 72 6f 72 29 86 74 2e",
		Message{int64(1), FlagError, ".reply", Tuple{ClassReadOnlyError, Tuple{}}}},
	{"J tpc_begin", Pickle, "00 00 00 40 80 03 28 4b 00 88 58 09 00 00 00 74 70 63 5f 62 65 67 69 6e 28 8a 06 cb b4 9a e7 8a 7f 43 03 62 6f 62 43 04 6e 6f 74 65 7d 58 01 00 00 00 6b 58 01 00 00 00 76 73 4e 58 01 00 00 00 20 74 74 2e",
		Message{int64(0), FlagAsync, "tpc_begin", Tuple{txnID, []byte("bob"), []byte("note"), Dict{{"k", "v"}}, nil, " "}}},
	{"J storea", Pickle, "00 00 00 39 80 03 28 4b 00 88 58 06 00 00 00 73 74 6f 72 65 61 28 43 08 00 00 00 00 00 00 00 01 43 08 03 f8 a4 b9 82 22 22 22 43 06 50 49 43 4b 4c 45 8a 06 cb b4 9a e7 8a 7f 74 74 2e",
		Message{int64(0), FlagAsync, "storea", Tuple{oid1, tid22, []byte("PICKLE"), txnID}}},
	{"J vote", Pickle, "00 00 00 1a 80 03 28 4b 06 89 58 04 00 00 00 76 6f 74 65 8a 06 cb b4 9a e7 8a 7f 85 74 2e",
		Message{int64(6), FlagSync, "vote", Tuple{txnID}}},
	{"J vote reply empty", Pickle, "00 00 00 15 80 03 28 4b 06 4b 00 58 06 00 00 00 2e 72 65 70 6c 79 5d 74 2e",
		Message{int64(6), FlagSync, ".reply", []any{}}},
	{"J vote reply conflict", Pickle, "00 00 00 5d 80 03 28 4b 06 4b 00 58 06 00 00 00 2e 72 65 70 6c 79 5d 7d 28 58 03 00 00 00 6f 69 64 43 08 00 00 00 00 00 00 00 01 58 07 00 00 00 73 65 72 69 61 6c 73 43 08 03 f8 a4 b9 82 22 22 23 43 08 03 f8 a4 b9 82 22 22 22 86 58 04 00 00 00 64 61 74 61 43 06 50 49 43 4b 4c 45 75 61 74 2e",
		Message{int64(6), FlagSync, ".reply", []any{Dict{{"oid", oid1}, {"serials", Tuple{tid23, tid22}}, {"data", []byte("PICKLE")}}}}},
	{"J tpc_finish", Pickle, "00 00 00 20 80 03 28 4b 07 89 58 0a 00 00 00 74 70 63 5f 66 69 6e 69 73 68 8a 06 cb b4 9a e7 8a 7f 85 74 2e",
		Message{int64(7), FlagSync, "tpc_finish", Tuple{txnID}}},
	{"J info", Pickle, "00 00 00 2e 80 03 28 4b 00 88 58 04 00 00 00 69 6e 66 6f 7d 28 58 06 00 00 00 6c 65 6e 67 74 68 4b 02 58 04 00 00 00 73 69 7a 65 4d c9 01 75 85 74 2e",
		Message{int64(0), FlagAsync, "info", Tuple{Dict{{"length", int64(2)}, {"size", int64(457)}}}}},
	{"J tpc_finish reply", Pickle, "00 00 00 1e 80 03 28 4b 07 4b 00 58 06 00 00 00 2e 72 65 70 6c 79 43 08 03 f8 a4 b9 82 22 22 23 74 2e",
		Message{int64(7), FlagSync, ".reply", tid23}},
	{"K new_oids reply", Pickle, "00 00 00 2b 80 03 28 4b 05 4b 00 58 06 00 00 00 2e 72 65 70 6c 79 5d 28 43 08 00 00 00 00 00 00 00 01 43 08 00 00 00 00 00 00 00 02 65 74 2e",
		Message{int64(5), FlagSync, ".reply", []any{oid1, oid2}}},
	{"K getInvalidations reply", Pickle, "00 00 00 2b 80 03 28 4b 02 4b 00 58 06 00 00 00 2e 72 65 70 6c 79 43 08 03 f8 a4 b9 82 22 22 23 5d 43 08 00 00 00 00 00 00 00 03 61 86 74 2e",
		Message{int64(2), FlagSync, ".reply", Tuple{tid23, []any{oid3}}}},
	{"K get_info call", Pickle, "00 00 00 16 80 03 28 4b 02 89 58 08 00 00 00 67 65 74 5f 69 6e 66 6f 29 74 2e",
		Message{int64(2), FlagSync, "get_info", Tuple{}}},
	{"K ping call", Pickle, "00 00 00 12 80 03 28 4b 12 89 58 04 00 00 00 70 69 6e 67 29 74 2e",
		Message{int64(0x12), FlagSync, "ping", Tuple{}}},
	{"K ping reply", Pickle, "00 00 00 15 80 03 28 4b 12 4b 00 58 06 00 00 00 2e 72 65 70 6c 79 4e 74 2e",
		Message{int64(0x12), FlagSync, ".reply", nil}},
	{"K undoInfo with ZopeUndo.Prefix", Pickle, "00 00 00 69 80 03 28 4b 0c 89 58 08 00 00 00 75 6e 64 6f 49 6e 66 6f 4b 00 4b 14 7d 58 09 00 00 00 75 73 65 72 5f 6e 61 6d 65 63 5a 6f 70 65 55 6e 64 6f 2e 50 72 65 66 69 78 0a 50 72 65 66 69 78 0a 29 81 7d 28 58 06 00 00 00 6c 65 6e 67 74 68 4b 01 58 04 00 00 00 70 61 74 68 5d 58 04 00 00 00 74 65 73 74 61 75 62 73 87 74 2e",
		Message{int64(12), FlagSync, "undoInfo", Tuple{int64(0), int64(20), Dict{{"user_name", &Object{
			Callable: Global{"ZopeUndo.Prefix", "Prefix"}, Args: Tuple{}, NewObj: true,
			State: Dict{{"length", int64(1)}, {"path", []any{"test"}}}}}}}}},
	{"heartbeat", Pickle, "00 00 00 18 80 03 28 4a ff ff ff ff 4b 00 58 06 00 00 00 2e 72 65 70 6c 79 4e 74 2e",
		Heartbeat()},

	{"L register call", Msgpack, "00 00 00 10 94 01 c2 a8 72 65 67 69 73 74 65 72 92 a1 31 00",
		Message{int64(1), FlagSync, "register", Tuple{"1", int64(0)}}},
	{"L register reply", Msgpack, "00 00 00 14 94 01 00 a6 2e 72 65 70 6c 79 c4 08 03 f8 a4 b9 82 22 22 22",
		Message{int64(1), FlagSync, ".reply", tid22}},
	{"L loadBefore call", Msgpack, "00 00 00 37 94 92 c4 08 00 00 00 00 00 00 00 01 c4 08 7f ff ff ff ff ff ff ff c2 aa 6c 6f 61 64 42 65 66 6f 72 65 92 c4 08 00 00 00 00 00 00 00 01 c4 08 7f ff ff ff ff ff ff ff",
		Message{Tuple{oid1, maxtid}, FlagSync, "loadBefore", Tuple{oid1, maxtid}}},
	{"L invalidateTransaction", Msgpack, "00 00 00 39 94 00 c3 b5 69 6e 76 61 6c 69 64 61 74 65 54 72 61 6e 73 61 63 74 69 6f 6e 92 c4 08 03 f8 a4 b9 82 22 22 23 92 c4 08 00 00 00 00 00 00 00 01 c4 08 00 00 00 00 00 00 00 07",
		Message{int64(0), FlagAsync, "invalidateTransaction", Tuple{tid23, Tuple{oid1, oid7}}}},
	{"L heartbeat", Msgpack, "00 00 00 0b 94 ff 00 a6 2e 72 65 70 6c 79 c0",
		Heartbeat()},
	{"L POSKeyError reply", Msgpack, "00 00 00 34 94 05 02 a6 2e 72 65 70 6c 79 92 bd 5a 4f 44 42 2e 50 4f 53 45 78 63 65 70 74 69 6f 6e 2e 50 4f 53 4b 65 79 45 72 72 6f 72 91 c4 08 00 00 00 00 00 00 00 05",
		Message{int64(5), FlagError, ".reply", Tuple{ClassPOSKeyError, Tuple{oid5}}}},
	{"L ConflictError reply", Msgpack, "00 00 00 83 94 09 02 a6 2e 72 65 70 6c 79 92 bf 5a 4f 44 42 2e 50 4f 53 45 78 63 65 70 74 69 6f 6e 2e 43 6f 6e 66 6c 69 63 74 45 72 72 6f 72 84 a7 6d 65 73 73 61 67 65 b7 64 61 74 61 62 61 73 65 20 63 6f 6e 66 6c 69 63 74 20 65 72 72 6f 72 a3 6f 69 64 c4 08 00 00 00 00 00 00 00 01 aa 63 6c 61 73 73 5f 6e 61 6d 65 c0 a7 73 65 72 69 61 6c 73 92 c4 08 03 f8 a4 b9 82 22 22 23 c4 08 03 f8 a4 b9 82 22 22 22",
		Message{int64(9), FlagError, ".reply", Tuple{ClassConflictError, conflictPayload}}},
	{"L tpc_begin", Msgpack, "00 00 00 38 94 00 c3 a9 74 70 63 5f 62 65 67 69 6e 96 cf 00 00 7f a4 fe 63 d9 50 c4 00 c4 19 69 6e 69 74 69 61 6c 20 64 61 74 61 62 61 73 65 20 63 72 65 61 74 69 6f 6e 80 c0 a1 20",
		Message{int64(0), FlagAsync, "tpc_begin", Tuple{int64(0x7fa4fe63d950), []byte{}, []byte("initial database creation"), Dict{}, nil, " "}}},
}
