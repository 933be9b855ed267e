package milter

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
	"go.uber.org/zap"

	"postlist/index"
	"postlist/index/indextest"
)

// The benchmark scale of issue 3: 10,000 lists, 1,000,000 members.
var benchScale = indextest.Synthetic{Lists: 10_000, Members: 1_000_000}

var (
	benchOnce sync.Once
	benchIx   *index.Index
	benchErr  error
)

func benchIndex(b *testing.B) *index.Index {
	b.Helper()
	benchOnce.Do(func() {
		benchIx = index.New(benchScale, index.Options{})
		benchErr = benchIx.Reload(context.Background())
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchIx
}

// rcptCase is one kind of RCPT the benchmark mixes.
type rcptCase struct {
	name  string
	make  func(r *rand.Rand) (rcpt, sender string)
	check func(d index.Decision) bool
}

func rcptCases(s indextest.Synthetic) []rcptCase {
	member := func(r *rand.Rand) (int, int) {
		i := r.IntN(s.Lists)
		return i, r.IntN(s.PerList(i))
	}
	return []rcptCase{
		{"member post", func(r *rand.Rand) (string, string) {
			i, j := member(r)
			return s.ListAddr(i), s.MemberAddr(i, j)
		}, func(d index.Decision) bool { return d.Accepted() }},
		{"non-member post to a reject list", func(r *rand.Rand) (string, string) {
			i := r.IntN(s.Lists/10) * 10 // every tenth list rejects non-members
			return s.ListAddr(i), fmt.Sprintf("stranger%d@example.net", r.IntN(1<<20))
		}, func(d index.Decision) bool { return d.Reason == index.ReasonNonmember }},
		{"VERP bounce of a member", func(r *rand.Rand) (string, string) {
			i, j := member(r)
			m := s.MemberAddr(i, j)
			at := len(m) - len(fmt.Sprintf("example%d.com", j%97)) - 1
			return fmt.Sprintf("list%d-bounces+%s=%s@lists.example.org", i, m[:at], m[at+1:]), ""
		}, func(d index.Decision) bool { return d.Reason == index.ReasonVERP }},
		{"unknown list", func(r *rand.Rand) (string, string) {
			return fmt.Sprintf("nolist%d@lists.example.org", r.IntN(1<<20)), "a@example.com"
		}, func(d index.Decision) bool { return d.Reason == index.ReasonNoSuchList }},
		{"not a list domain", func(r *rand.Rand) (string, string) {
			return fmt.Sprintf("user%d@example.com", r.IntN(1<<20)), "a@example.com"
		}, func(d index.Decision) bool { return !d.Ours }},
	}
}

// BenchmarkRcptDecision measures the decision the milter makes per RCPT
// (resolution, VERP/member lookups, sender policy) on the index, without
// the milter protocol: what postlist adds to Postfix's wait. It reports
// p50/p99 latency per case; the floor is p99 under 1 ms.
func BenchmarkRcptDecision(b *testing.B) {
	ix := benchIndex(b)
	snap := ix.Snapshot()
	for _, c := range rcptCases(benchScale) {
		b.Run(c.name, func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 2))
			const pool = 4096
			rcpts, senders := make([]string, pool), make([]string, pool)
			for i := range pool {
				rcpts[i], senders[i] = c.make(r)
				if d, _ := decide(snap, rcpts[i], senders[i], true); !c.check(d) {
					b.Fatalf("%s: decision for %q from %q is %+v", c.name, rcpts[i], senders[i], d)
				}
			}
			lat := make([]time.Duration, 0, min(b.N, 1<<20))
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				k := i % pool
				start := time.Now()
				decide(snap, rcpts[k], senders[k], true)
				if len(lat) < cap(lat) {
					lat = append(lat, time.Since(start))
				}
			}
			b.StopTimer()
			reportPercentiles(b, lat)
		})
	}
}

// BenchmarkRcptRoundTrip measures one RCPT as Postfix experiences it:
// written to the milter over loopback TCP, decided, answered. The
// difference to BenchmarkRcptDecision is what the milter protocol and
// go-milter cost.
func BenchmarkRcptRoundTrip(b *testing.B) {
	ix := benchIndex(b)
	srv := New(Options{Index: ix, Log: zap.NewNop()})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()

	macros := gomilter.NewMacroBag()
	macros.Set(gomilter.MacroClientAddr, "192.0.2.7")
	sess, err := gomilter.NewClient("tcp", ln.Addr().String()).Session(macros)
	if err != nil {
		b.Fatal(err)
	}
	defer sess.Close()
	if _, err := sess.Conn("h", gomilter.FamilyInet, 1, "192.0.2.7"); err != nil {
		b.Fatal(err)
	}
	if _, err := sess.Helo("h"); err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	cases := rcptCases(benchScale)
	lat := make([]time.Duration, 0, min(b.N, 1<<20))
	b.ResetTimer()
	for i := range b.N {
		// A new transaction every 50 RCPTs keeps it realistic and bounded.
		if i%50 == 0 {
			if i > 0 {
				if err := sess.Abort(nil); err != nil {
					b.Fatal(err)
				}
			}
			_, sender := cases[0].make(r)
			macros.Set(gomilter.MacroMailAddr, sender)
			if _, err := sess.Mail(sender, ""); err != nil {
				b.Fatal(err)
			}
		}
		rcpt, _ := cases[i%len(cases)].make(r)
		start := time.Now()
		if _, err := sess.Rcpt(rcpt, ""); err != nil {
			b.Fatal(err)
		}
		if len(lat) < cap(lat) {
			lat = append(lat, time.Since(start))
		}
	}
	b.StopTimer()
	reportPercentiles(b, lat)
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	p := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Nanoseconds()) }
	b.ReportMetric(p(0.50), "p50-ns")
	b.ReportMetric(p(0.99), "p99-ns")
}

// BenchmarkIndexMemory reports the heap the 10k/1M snapshot holds.
func BenchmarkIndexMemory(b *testing.B) {
	for range b.N {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		ix := index.New(benchScale, index.Options{})
		start := time.Now()
		if err := ix.Reload(context.Background()); err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		runtime.GC()
		runtime.ReadMemStats(&after)
		st := ix.Snapshot().Stats()
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "heap-MiB")
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(st.Members), "B/member")
		b.ReportMetric(float64(took.Milliseconds()), "build-ms")
		runtime.KeepAlive(ix)
	}
}
