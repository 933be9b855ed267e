package index_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"postlist/index"
	"postlist/index/indextest"
	"postlist/store"
)

// seeded is a database with the benchmark scale (10,000 lists, 1,000,000
// members), written once per test binary run: writing it takes longer
// than everything measured.
var seeded struct {
	once sync.Once
	dir  string
	path string
	err  error
	took time.Duration
}

func TestMain(m *testing.M) {
	code := m.Run()
	if seeded.dir != "" {
		os.RemoveAll(seeded.dir)
	}
	os.Exit(code)
}

func seedDB(b *testing.B) string {
	b.Helper()
	seeded.once.Do(func() {
		start := time.Now()
		seeded.dir, seeded.err = os.MkdirTemp("", "postlist-index-bench-")
		if seeded.err != nil {
			return
		}
		seeded.path = filepath.Join(seeded.dir, "postlist.db")
		seeded.err = seed(seeded.path, indextest.Synthetic{Lists: 10_000, Members: 1_000_000})
		seeded.took = time.Since(start)
	})
	if seeded.err != nil {
		b.Fatal(seeded.err)
	}
	return seeded.path
}

func seed(path string, syn indextest.Synthetic) error {
	ctx := context.Background()
	st, err := store.Open(ctx, path)
	if err != nil {
		return err
	}
	defer st.Close()
	for i := range syn.Lists {
		if _, err := st.CreateList(ctx, syn.ListAddr(i)); err != nil {
			return err
		}
		ms := make([]store.NewMember, syn.PerList(i))
		for j := range ms {
			ms[j].Address = syn.MemberAddr(i, j)
		}
		if _, err := st.AddMembers(ctx, syn.ListAddr(i), "member", ms, nil); err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkReloadFromSQLite is the full rebuild Run does after a change,
// at 10,000 lists and 1,000,000 members read from a real database: the
// time until a CLI change is live is one poll interval plus this.
func BenchmarkReloadFromSQLite(b *testing.B) {
	path := seedDB(b)
	ctx := context.Background()
	st, err := store.Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ix := index.New(st, index.Options{})
	b.ResetTimer()
	for range b.N {
		if err := ix.Reload(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	s := ix.Snapshot().Stats()
	if s.Lists != 10_000 || s.Members != 1_000_000 {
		b.Fatalf("loaded %d lists, %d members", s.Lists, s.Members)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "heap-MiB")
	b.ReportMetric(float64(s.LoadTime.Milliseconds()), "last-load-ms")
	runtime.KeepAlive(ix)
}

// BenchmarkReloadSynthetic is the same rebuild without SQLite, to show
// what the database read costs.
func BenchmarkReloadSynthetic(b *testing.B) {
	ix := index.New(indextest.Synthetic{Lists: 10_000, Members: 1_000_000}, index.Options{})
	for range b.N {
		if err := ix.Reload(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecideParallel checks that decisions scale across cores while a
// reload swaps snapshots underneath (no lock on the read path).
func BenchmarkDecideParallel(b *testing.B) {
	syn := indextest.Synthetic{Lists: 1000, Members: 100_000}
	ix := index.New(syn, index.Options{})
	if err := ix.Reload(context.Background()); err != nil {
		b.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				_ = ix.Reload(context.Background())
			}
		}
	}()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l := i % syn.Lists
			ix.Decide(fmt.Sprintf("list%d-bounces+member%d.0=example0.com@lists.example.org", l, l))
			i++
		}
	})
	close(stop)
	<-done
}
