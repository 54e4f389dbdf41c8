//go:build interop

package interop

import (
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// chaosSeconds is how long the chaos test's clients commit:
// ZEORAID_CHAOS_SECONDS, default 90 (CI-sized: the test takes about two
// minutes).
func chaosSeconds(t *testing.T) float64 {
	if v := os.Getenv("ZEORAID_CHAOS_SECONDS"); v != "" {
		s, err := strconv.ParseFloat(v, 64)
		if err != nil || s <= 0 {
			t.Fatalf("ZEORAID_CHAOS_SECONDS=%q: want a positive number", v)
		}
		return s
	}
	return 90
}

// TestRAIDChaos: 4 client processes commit and record every acknowledged
// commit while, round after round, one of the two runzeo children is
// killed at a random moment, replaced by a fresh empty server on the same
// port and recovered with `zeoraid ctl recover`. At the end every
// acknowledged commit is readable, `zeoraid check` finds the children
// identical (and so does reading each runzeo directly), and no client saw
// an error: at least one child was up all the time.
func TestRAIDChaos(t *testing.T) {
	t.Parallel()
	chaos(t, newRAIDSetup(t, 2, raidOptions{reads: "random"}), chaosSeconds(t))
}

// chaos runs the chaos test's rounds on rs for the given seconds of
// client commits, alternating between its first two children.
func chaos(t *testing.T, rs *raidSetup, seconds float64) {
	t.Helper()
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(uint64(seed), 0))
	wait := runClients(t, rs, 4, seconds, 0.02)
	end := time.Now().Add(time.Duration(seconds*float64(time.Second)) - 8*time.Second)
	rounds := 0
	for time.Now().Before(end) {
		c := rs.children[rounds%2]
		name := c.name
		time.Sleep(time.Duration(500+rnd.IntN(2500)) * time.Millisecond)
		c.kill()
		time.Sleep(time.Duration(200+rnd.IntN(1500)) * time.Millisecond)
		c.start(true)
		began := time.Now()
		out, code := ctl(t, rs.addr(), "recover", name)
		if code != 0 || !strings.Contains(out, "'"+name+"' is optimal") {
			b, _ := os.ReadFile(rs.srv.log)
			t.Fatalf("round %d: recovering child %s: exit %d: %s; details %v; zeoraid log:\n%s",
				rounds+1, name, code, out, details(t, rs.addr()), tail(b, 5000))
		}
		rounds++
		t.Logf("round %d: child %s killed, replaced and recovered in %s (%d transactions copied)",
			rounds, name, time.Since(began).Round(time.Millisecond), copiedByRecovery(t, rs.srv))
	}
	acked := wait()
	n := checkAcked(t, rs, acked)
	if rounds < 3 || n == 0 {
		t.Errorf("only %d rounds and %d acknowledged commits: the test proved little", rounds, n)
	}
	wantStatus(t, rs.addr(), "optimal", 0)
	if out, code := runZeoraid(t, "check", "-t", "2m", "-a", rs.addr()); code != 0 || !strings.Contains(out, "identical") {
		t.Fatalf("zeoraid check = exit %d: %s", code, out)
	}
	h := sameHistories(t, false, n, rs.children...)
	t.Logf("%d rounds; %d commits acknowledged by 4 clients; %d transactions, identical on both children", rounds, n, len(h))
}
