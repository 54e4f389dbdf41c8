package zeoproto

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"strings"
	"testing"

	"github.com/zeoraid/zeoraid/stack"
)

// Every golden frame (vectors_test.go) decodes to the expected message and re-encodes to the
// same bytes.
func TestVectors(t *testing.T) {
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			frame := unhex(v.frame)
			fr := NewFrameReader(bytes.NewReader(frame), 0)
			p, err := fr.ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			m, err := v.codec.Decode(p)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(m, v.msg) {
				t.Fatalf("decoded\n %#v\nwant\n %#v", m, v.msg)
			}
			enc, err := v.codec.Encode(v.msg)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if got := AppendFrame(nil, enc); !bytes.Equal(got, frame) {
				t.Fatalf("encoded\n % x\nwant\n % x", got, frame)
			}
		})
	}
}

// The server's own constructors produce the golden bytes.
func TestConstructorsMatchPython(t *testing.T) {
	cases := []struct {
		codec Codec
		msg   Message
		want  string
	}{
		{Pickle, NewReply(Tuple{oid1, maxtid}, Tuple{[]byte("PICKLE"), stack.Tid(0x03f8a4b982222222), nil}), "E loadBefore reply"},
		{Pickle, NewAsync("invalidateTransaction", stack.Tid(0x03f8a4b982222223), []stack.Oid{1, 7}), "F invalidateTransaction"},
		{Pickle, NewErrorReply(int64(5), &stack.NotFoundError{Oid: 5}), "G POSKeyError reply"},
		{Pickle, NewErrorReply(int64(9), &stack.OpError{Node: "main", Op: "vote", Err: &stack.ConflictError{Oid: 1, Committed: 0x03f8a4b982222223, Read: 0x03f8a4b982222222}}), "H ConflictError reply"},
		{Pickle, NewErrorReply(int64(1), stack.ErrReadOnly), "I ReadOnlyError reply"},
		{Pickle, NewAsync("info", map[string]any{"length": 2, "size": 457}), "J info"},
		{Msgpack, NewAsync("invalidateTransaction", stack.Tid(0x03f8a4b982222223), []stack.Oid{1, 7}), "L invalidateTransaction"},
		{Msgpack, NewErrorReply(int64(5), &stack.NotFoundError{Oid: 5}), "L POSKeyError reply"},
		{Msgpack, NewErrorReply(int64(9), &stack.ConflictError{Oid: 1, Committed: 0x03f8a4b982222223, Read: 0x03f8a4b982222222}), "L ConflictError reply"},
	}
	for _, c := range cases {
		var want []byte
		for _, v := range vectors {
			if v.name == c.want {
				want = unhex(v.frame)[4:]
			}
		}
		if want == nil {
			t.Fatalf("no vector %q", c.want)
		}
		got, err := c.codec.Encode(c.msg)
		if err != nil {
			t.Fatalf("%s: %v", c.want, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s:\n got % x\nwant % x", c.want, got, want)
		}
	}
}

func TestPickleInts(t *testing.T) {
	cases := []struct {
		v    any
		want string
	}{
		{int64(0), "4b00"}, {int64(255), "4bff"}, {int64(256), "4d0001"}, {int64(65535), "4dffff"},
		{int64(65536), "4a00000100"}, {int64(-1), "4affffffff"}, {int64(math.MinInt32), "4a00000080"},
		{int64(math.MaxInt32) + 1, "8a050000008000"}, {int64(math.MinInt32) - 1, "8a05ffffff7fff"},
		{int64(-1) << 39, "8a050000000080"}, {int64(-1) << 32, "8a0500000000ff"}, // minimal form drops a redundant 0xff
		{int64(math.MaxInt64), "8a08ffffffffffffff7f"}, {int64(math.MinInt64), "8a080000000000000080"},
		{new(big.Int).Lsh(big.NewInt(1), 64), "8a09000000000000000001"},
		{1.5, "473ff8000000000000"}, {true, "88"}, {false, "89"}, {nil, "4e"},
		{bytes.Repeat([]byte{1}, 256)[:0], "4300"},
	}
	for _, c := range cases {
		b, err := appendPickle(nil, c.v)
		if err != nil {
			t.Fatal(err)
		}
		if got := hexs(b); got != c.want {
			t.Errorf("%v: got %s want %s", c.v, got, c.want)
			continue
		}
		back, err := DecodePickle(append(append([]byte{0x80, 3}, b...), '.'))
		if err != nil {
			t.Fatalf("%v: %v", c.v, err)
		}
		if bi, ok := c.v.(*big.Int); ok {
			if back.(*big.Int).Cmp(bi) != 0 {
				t.Errorf("%v: decoded %v", c.v, back)
			}
		} else if !reflect.DeepEqual(back, c.v) && !(c.v == nil && back == nil) {
			if bs, ok := c.v.([]byte); !ok || !bytes.Equal(bs, back.([]byte)) {
				t.Errorf("%v: decoded %#v", c.v, back)
			}
		}
	}
}

func hexs(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// Large containers follow Python's batching and size thresholds.
func TestPickleLargeShapes(t *testing.T) {
	big := bytes.Repeat([]byte{'x'}, 300)
	b, _ := appendPickle(nil, big)
	if !bytes.HasPrefix(b, []byte{'B', 0x2c, 0x01, 0, 0}) {
		t.Errorf("300-byte bytes: % x", b[:5])
	}
	l := make([]any, 1001)
	for i := range l {
		l[i] = nil
	}
	b, _ = appendPickle(nil, l)
	// ']' '(' 1000×N 'e' then the 1001st as N 'a'
	if len(b) != 1+1+1000+1+2 || b[1002] != 'e' || b[1004] != 'a' {
		t.Errorf("1001-item list: %d bytes, tail % x", len(b), b[len(b)-4:])
	}
	tup := Tuple{int64(1), int64(2), int64(3), int64(4)}
	b, _ = appendPickle(nil, tup)
	if hexs(b) != "284b014b024b034b0474" {
		t.Errorf("4-tuple: %s", hexs(b))
	}
}

// Python-2 style and memo opcodes that Python clients may send decode too.
func TestPickleLegacyOpcodes(t *testing.T) {
	cases := []struct {
		pickle string
		want   any
	}{
		{"(I1\nI00\nL12345678901234567890L\nF1.5\nS'a\\'b'\nVh\\u00e9\ntp0\n.", Tuple{int64(1), false, mustBig("12345678901234567890"), 1.5, []byte("a'b"), "hé"}},
		{"\x80\x02]q\x00(U\x08\x00\x00\x00\x00\x00\x00\x00\x01q\x01h\x01e.", []any{oid1, oid1}},
		{"\x80\x02(dp0\nU\x01kq\x01U\x01vs.", Dict{{[]byte("k"), []byte("v")}}},
		{"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00\x8c\x01a\x94\x8f\x94(K\x01\x90.", nil}, // STOP with 2 values is an error below
		{"((K\x011t.", Tuple{}}, // POP_MARK discards back to the inner MARK
		{"\x80\x03cbuiltins\nset\n]K\x01a\x85R.", &Object{Callable: Global{"builtins", "set"}, Args: Tuple{[]any{int64(1)}}}},
	}
	for i, c := range cases {
		v, err := DecodePickle([]byte(c.pickle))
		if c.want == nil {
			if err == nil {
				t.Errorf("%d: no error for a bad pickle", i)
			}
			continue
		}
		if err != nil {
			t.Errorf("%d: %v", i, err)
			continue
		}
		if !reflect.DeepEqual(v, c.want) {
			t.Errorf("%d: got %#v want %#v", i, v, c.want)
		}
	}
}

func mustBig(s string) *big.Int {
	n, _ := new(big.Int).SetString(s, 10)
	return n
}

// Globals outside ZEO's request whitelist are refused, whichever opcode
// names them; nothing is ever called.
func TestPickleRefusesGlobals(t *testing.T) {
	for _, p := range []string{
		"\x80\x03cos\nsystem\nX\x02\x00\x00\x00ls\x85R.",
		"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00a\x85R.",
		"\x80\x04\x8c\x02os\x8c\x06system\x93.",
		"\x80\x03cZODB.POSException\nPOSKeyError\n.",
	} {
		_, err := DecodePickle([]byte(p))
		var ge *GlobalError
		if !errors.As(err, &ge) {
			t.Errorf("%q: want GlobalError, got %v", p, err)
		}
	}
	// A client keeps any global from a server as an opaque value.
	v, err := DecodeReplyPickle([]byte("\x80\x03cdatetime\ndatetime\nC\x01a\x85R."))
	if want := (&Object{Callable: Global{"datetime", "datetime"}, Args: Tuple{[]byte("a")}}); err != nil || !reflect.DeepEqual(v, want) {
		t.Errorf("reply with a datetime: %#v %v", v, err)
	}
	for _, p := range []string{"\x80\x03czodbpickle\nbinary\nC\x01a\x85R.", "\x80\x03ccopy_reg\n_reconstructor\n)R."} {
		if _, err := DecodePickle([]byte(p)); err != nil {
			t.Errorf("%q: whitelisted global refused: %v", p, err)
		}
	}
}

func TestPickleMalformed(t *testing.T) {
	for _, p := range []string{
		"", "\x80\x03", "\x80\x03N", "\x80\x03NN.", "\x80\x03t.", "\x80\x03(.", "\x80\x03B\xff\xff\xff\x7f.",
		"\x80\x03a.", "\x80\x03]Na", "\x80\x03h\x01.", "\x80\x03N.junk", "\x80\x03Q.", "\x80\x03}]Ns.", "\x80\x09N.",
	} {
		if v, err := DecodePickle([]byte(p)); err == nil {
			t.Errorf("%q: decoded %#v, want an error", p, v)
		}
	}
}

func TestMsgpackEncodingRules(t *testing.T) {
	cases := []struct {
		v    any
		want string
	}{
		{int64(-1), "ff"}, {int64(-33), "d0df"}, {int64(128), "cc80"}, {int64(1 << 40), "cf0000010000000000"},
		{[]byte(nil), "c400"}, {"é", "a2c3a9"}, {1.5, "cb3ff8000000000000"},
		{Dict{{[]byte("k"), true}}, "81c4016bc3"}, {Tuple{}, "90"}, {[]any{nil}, "91c0"},
	}
	for _, c := range cases {
		b, err := EncodeMsgpack(c.v)
		if err != nil {
			t.Fatal(err)
		}
		if hexs(b) != c.want {
			t.Errorf("%#v: got %s want %s", c.v, hexs(b), c.want)
		}
	}
	for _, bad := range []any{Dict{{int64(1), nil}}, Global{"a", "b"}, &Object{}, struct{}{}} {
		if _, err := EncodeMsgpack(bad); err == nil {
			t.Errorf("%#v: encoded, want an error", bad)
		}
	}
	if v, err := DecodeMsgpack(unhex("cfffffffffffffffff")); err != nil || v.(*big.Int).String() != "18446744073709551615" {
		t.Errorf("uint64 max: %v %v", v, err)
	}
	for _, bad := range []string{"dd7fffffff", "c6ffffffff00", "c0c0", "d4", "c1", "81c0c0"} {
		if v, err := DecodeMsgpack(unhex(bad)); err == nil {
			t.Errorf("%s: decoded %#v, want an error", bad, v)
		}
	}
}

func TestMessageShape(t *testing.T) {
	for _, p := range []string{"\x80\x03N.", "\x80\x03(K\x01K\x00X\x01\x00\x00\x00aN\x87.", "\x80\x03(G\x00\x00\x00\x00\x00\x00\x00\x00K\x00X\x01\x00\x00\x00aNt."} {
		if _, err := Pickle.Decode([]byte(p)); err == nil {
			t.Errorf("%q: accepted as a message", p)
		}
	}
	m := Message{ID: int64(3), Flag: FlagAsync, Name: "storea"}
	if !m.IsAsync() || m.IsReply() || m.IsError() {
		t.Error("async call misclassified")
	}
	m = Message{ID: int64(3), Flag: 1, Name: ReplyName}
	if !m.IsError() {
		t.Error("a truthy reply flag must be an error")
	}
}

// Hostile inputs cannot make decoding quadratic or expand memory far
// beyond the input: shared references are charged to a budget, dict keys
// are indexed, copies happen on write only.
func TestDecodeBounds(t *testing.T) {
	// memo references to a big list, many times
	p := []byte("\x80\x03(]q\x00(")
	for range 20000 {
		p = append(p, 'N')
	}
	p = append(p, 'e')
	for range 20000 {
		p = append(p, 'h', 0)
	}
	p = append(p, "t."...)
	if _, err := DecodePickle(p); err == nil || !strings.Contains(err.Error(), "expands too much") {
		t.Errorf("memo expansion: %v", err)
	}
	// doubling through DUP and TUPLE2
	p = []byte("\x80\x03)")
	for range 64 {
		p = append(p, '2', opTuple2)
	}
	if _, err := DecodePickle(append(p, '.')); err == nil {
		t.Error("DUP doubling decoded")
	}
	// a modest amount of sharing is fine, and sees complete containers
	v, err := DecodePickle([]byte("(]q\x00K\x01ah\x00t."))
	if err != nil || !reflect.DeepEqual(v, Tuple{[]any{int64(1)}, []any{int64(1)}}) {
		t.Errorf("shared list: %#v %v", v, err)
	}
	// appending to a GET copy does not alter the original
	v, err = DecodePickle([]byte("(]q\x00Nah\x00K\x01at."))
	if err != nil || !reflect.DeepEqual(v, Tuple{[]any{nil}, []any{nil, int64(1)}}) {
		t.Errorf("copy on write: %#v %v", v, err)
	}
	// many distinct keys, pickle and msgpack; equal keys collapse as in Python
	const n = 100000
	pk := []byte("\x80\x03}(")
	mp := []byte{0xdf, 0, byte(n >> 16), byte(n >> 8 & 0xff), byte(n & 0xff)}
	for i := range n {
		pk = appendPickleInt(pk, int64(i))
		pk = append(pk, 'N')
		key := fmt.Sprintf("%06d", i)
		mp = append(mp, 0xa6)
		mp = append(mp, key...)
		mp = append(mp, 0xc0)
	}
	pk = append(pk, "K\x01\x88\x88\x88u."...) // 1 again, then True: the same key
	d, err := DecodePickle(pk)
	if err != nil || len(d.(Dict)) != n || d.(Dict)[1].Value != true {
		t.Errorf("big pickle dict: %d %v", len(d.(Dict)), err)
	}
	m, err := DecodeMsgpack(mp)
	if err != nil || len(m.(Dict)) != n {
		t.Errorf("big msgpack map: %v", err)
	}
	// nesting beyond Python's recursion limit is refused when decoding
	deepPickle := []byte(")")
	for range maxDepth + 5 {
		deepPickle = append(deepPickle, opTuple1)
	}
	if _, err := DecodePickle(append(deepPickle, '.')); err == nil {
		t.Error("deep pickle decoded")
	}
	deepMsgpack := bytes.Repeat([]byte{0x91}, maxDepth+5)
	if _, err := DecodeMsgpack(append(deepMsgpack, 0xc0)); err == nil {
		t.Error("deep msgpack decoded")
	}
	// BUILD with the object itself as state cannot make a cycle
	if v, err := DecodePickle([]byte("\x8f2b.")); err != nil || v.(*Object).State.(*Object).State != nil {
		t.Errorf("self BUILD: %#v %v", v, err)
	}
	// nesting beyond Python's recursion limit is refused when encoding
	var deep any = Tuple{}
	for range maxDepth + 5 {
		deep = Tuple{deep}
	}
	if _, err := EncodePickle(deep); err == nil {
		t.Error("deep pickle encoded")
	}
	if _, err := EncodeMsgpack(deep); err == nil {
		t.Error("deep msgpack encoded")
	}
}
