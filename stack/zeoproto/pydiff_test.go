//go:build interop

package zeoproto

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zeoraid/zeoraid/interop/pyenv"
)

// randValue builds a random value of the model that both Python codecs can
// carry (no globals, str/bytes dict keys, unique keys).
func randValue(r *rand.Rand, depth int) any {
	k := r.IntN(14)
	if depth > 3 && k >= 9 {
		k = r.IntN(9)
	}
	switch k {
	case 0:
		return nil
	case 1:
		return r.IntN(2) == 0
	case 2:
		edges := []int64{0, 1, 127, 128, 255, 256, 65535, 65536, math.MaxInt32, math.MaxInt32 + 1, -1, -32, -33, -128, -129,
			math.MinInt32, math.MinInt32 - 1, math.MaxInt64, math.MinInt64, 140234567890123, -1 << 39}
		return edges[r.IntN(len(edges))]
	case 3:
		return r.Int64() >> r.IntN(64) * int64(1-2*r.IntN(2))
	case 4:
		fs := []float64{0, 1.5, -2.25, math.Inf(1), math.MaxFloat64, math.SmallestNonzeroFloat64, r.NormFloat64()}
		return fs[r.IntN(len(fs))]
	case 5:
		runes := []rune{'a', 'é', '€', '😀', ' ', '\n', 0}
		var b strings.Builder
		for range r.IntN(40) {
			b.WriteRune(runes[r.IntN(len(runes))])
		}
		return b.String()
	case 6, 7:
		n := []int{0, 1, 8, 255, 256, 300}[r.IntN(6)]
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return b
	case 8:
		if r.IntN(2) == 0 {
			return new(big.Int).Lsh(big.NewInt(int64(r.IntN(1000)+1)), uint(64+r.IntN(200))) // pickle only
		}
		return uint64(math.MaxUint64) - uint64(r.IntN(10))
	case 9, 10:
		t := make(Tuple, r.IntN(6))
		for i := range t {
			t[i] = randValue(r, depth+1)
		}
		return t
	case 11:
		n := r.IntN(6)
		if r.IntN(20) == 0 {
			n = 1001 + r.IntN(1100)
		}
		l := make([]any, n)
		for i := range l {
			l[i] = randValue(r, depth+3)
		}
		return l
	default:
		d := Dict{}
		for i := range r.IntN(5) {
			var key any = fmt.Sprintf("k%d", i)
			if r.IntN(3) == 0 {
				key = []byte(fmt.Sprintf("b%d", i))
			}
			d = append(d, DictItem{key, randValue(r, depth+1)})
		}
		return d
	}
}

// Our encodings of random messages are byte-identical to what Python ZEO
// produces after decoding them with its own (server) decoders.
func TestCodecsAgainstPython(t *testing.T) {
	py := pyenv.Python(t)
	cmd := exec.Command(py, filepath.Join("testdata", "roundtrip.py"))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("roundtrip.py: %v\n%s", err, stderr.String())
		}
	}()
	out := bufio.NewScanner(stdout)
	out.Buffer(nil, 64<<20)
	r := rand.New(rand.NewPCG(1, 2))
	compared := 0
	for i := range 600 {
		codec := []Codec{Pickle, Msgpack}[i%2]
		m := Message{ID: int64(r.IntN(1000)), Flag: r.IntN(3), Name: []string{"vote", ReplyName, "storea"}[r.IntN(3)], Args: randValue(r, 0)}
		ours, err := codec.Encode(m)
		if err != nil {
			if codec == Msgpack { // big ints beyond 64 bits: msgpack cannot carry them
				continue
			}
			t.Fatalf("encode %#v: %v", m, err)
		}
		fmt.Fprintf(stdin, "%c %x\n", codec.Protocol(), ours)
		if !out.Scan() {
			t.Fatalf("roundtrip.py died: %v\n%s", out.Err(), stderr.String())
		}
		line := out.Text()
		if strings.HasPrefix(line, "ERR") {
			t.Fatalf("Python could not decode our %c encoding of %#v: %s", codec.Protocol(), m, line)
		}
		theirs, _ := hex.DecodeString(line)
		if !bytes.Equal(ours, theirs) {
			t.Fatalf("%c encoding of %#v differs from Python's:\n ours % x\ntheirs % x", codec.Protocol(), m, ours, theirs)
		}
		back, err := codec.Decode(theirs)
		if err != nil {
			t.Fatalf("decode Python's bytes: %v", err)
		}
		if ours2, _ := codec.Encode(back); !bytes.Equal(ours2, ours) {
			t.Fatalf("decode/encode of Python's bytes is not stable")
		}
		compared++
	}
	if compared < 500 {
		t.Fatalf("only %d messages compared", compared)
	}
}
