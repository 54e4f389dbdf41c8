package zeoproto

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

// Seeds: the golden frames of vectors_test.go (testdata/fuzz holds the same as committed corpora).
func addVectorSeeds(f *testing.F, codec Codec, payload bool) {
	for _, v := range vectors {
		if codec != nil && v.codec != codec {
			continue
		}
		b := unhex(v.frame)
		if payload {
			b = b[4:]
		}
		f.Add(b)
	}
}

func FuzzFrameReader(f *testing.F) {
	addVectorSeeds(f, nil, false)
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		const max = 1 << 16
		fr := NewFrameReader(bytes.NewReader(data), max)
		var frames [][]byte
		for {
			p, err := fr.ReadFrame()
			if err != nil {
				var tl *FrameTooLargeError
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrEmptyFrame) && !errors.As(err, &tl) {
					t.Fatalf("unexpected error %v", err)
				}
				break
			}
			if len(p) == 0 || len(p) > max {
				t.Fatalf("frame of %d bytes", len(p))
			}
			frames = append(frames, p)
		}
		// Re-framing what was read reproduces a prefix of the input.
		var out []byte
		for _, p := range frames {
			out = AppendFrame(out, p)
		}
		if !bytes.HasPrefix(data, out) {
			t.Fatal("re-framed frames are not a prefix of the input")
		}
	})
}

// fuzzCodec checks that decoding never panics and that whatever decodes
// re-encodes to something that decodes to the same value, and encodes to
// the same bytes again (encode is a fixed point after one round).
func fuzzCodec(t *testing.T, data []byte, decode func([]byte) (any, error), encode func(any) ([]byte, error)) {
	v, err := decode(data)
	if err != nil {
		return
	}
	enc, err := encode(v)
	if err != nil {
		return // e.g. a pickle Global inside msgpack-incompatible shapes
	}
	v2, err := decode(enc)
	if err != nil {
		t.Fatalf("re-decode of %x: %v", enc, err)
	}
	if !reflect.DeepEqual(normalize(v), normalize(v2)) {
		t.Fatalf("unstable: %#v then %#v", v, v2)
	}
	enc2, err := encode(v2)
	if err != nil || !bytes.Equal(enc, enc2) {
		t.Fatalf("re-encode differs: %x vs %x (%v)", enc, enc2, err)
	}
}

// normalize makes values comparable with DeepEqual: NaN floats compare
// unequal to themselves, so they are replaced by a marker.
func normalize(v any) any {
	switch v := v.(type) {
	case float64:
		if v != v {
			return "NaN"
		}
	case Tuple:
		out := make(Tuple, len(v))
		for i := range v {
			out[i] = normalize(v[i])
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i := range v {
			out[i] = normalize(v[i])
		}
		return out
	case Dict:
		out := make(Dict, len(v))
		for i := range v {
			out[i] = DictItem{normalize(v[i].Key), normalize(v[i].Value)}
		}
		return out
	}
	return v
}

func FuzzDecodePickle(f *testing.F) {
	addVectorSeeds(f, Pickle, true)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzCodec(t, data, DecodePickle, EncodePickle)
		checkAgainstOgorek(t, data)
		_, _ = Pickle.Decode(data)
	})
}

func FuzzDecodeMsgpack(f *testing.F) {
	addVectorSeeds(f, Msgpack, true)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzCodec(t, data, DecodeMsgpack, EncodeMsgpack)
		_, _ = Msgpack.Decode(data)
	})
}
