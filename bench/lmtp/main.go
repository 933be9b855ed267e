// Command lmtp measures LMTP ingest: go-smtp LMTP clients on loopback send
// messages to an in-process postlist LMTP server that commits each one to
// SQLite (synchronous=FULL, group commit) before its 250, exactly as the
// daemon does. It prints messages per second and commits (WAL fsyncs) per
// message for 1, 8 and 32 concurrent sessions and 4 KB and 100 KB
// messages. The floor is 3,000 messages/s at 8 sessions with 4 KB
// messages on a 2-core machine.
//
// The database lives in a fresh directory on a real disk: fsync on tmpfs
// costs nothing and would make the numbers meaningless, so when the
// temporary directory is tmpfs the working directory is used instead.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
	"go.uber.org/zap"

	"postlist/bench/internal/benchenv"
	"postlist/index"
	"postlist/lmtp"
	"postlist/store"
)

const list = "bench@lists.example.org"

func main() {
	dur := flag.Duration("duration", 4*time.Second, "measuring time per cell")
	dir := flag.String("dir", "", "directory for the databases (default: the temporary directory unless it is tmpfs)")
	only := flag.String("only", "", "run one cell only, SESSIONSxKB (e.g. 8x4)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench lmtp:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "bench lmtp:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	if err := run(*dur, *dir, *only); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "bench lmtp:", err)
		os.Exit(1)
	}
}

func run(dur time.Duration, dir, only string) error {
	base, err := benchenv.Dir(dir, "postlist-bench-lmtp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(base)
	fmt.Printf("LMTP ingest into SQLite (synchronous=FULL, group commit); database in %s; %v per cell\n\n", base, dur)
	fmt.Printf("%-9s %9s %10s %12s %12s %10s %10s\n", "sessions", "size", "messages", "msgs/s", "commits/msg", "p50", "p99")
	for _, size := range []int{4 << 10, 100 << 10} {
		for _, sessions := range []int{1, 8, 32} {
			if only != "" && only != fmt.Sprintf("%dx%d", sessions, size>>10) {
				continue
			}
			r, err := cell(base, sessions, size, dur)
			if err != nil {
				return fmt.Errorf("%d sessions, %d bytes: %w", sessions, size, err)
			}
			fmt.Printf("%-9d %8dK %10d %12.0f %12.3f %10s %10s\n", sessions, size>>10, r.messages,
				float64(r.messages)/r.elapsed.Seconds(), float64(r.commits)/float64(r.messages),
				r.p50.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond))
		}
	}
	return nil
}

type result struct {
	messages int
	commits  uint64
	elapsed  time.Duration
	p50, p99 time.Duration
}

// cell runs one measurement on a fresh database.
func cell(base string, sessions, size int, dur time.Duration) (result, error) {
	ctx := context.Background()
	dir, err := os.MkdirTemp(base, "cell-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	st, err := store.Open(ctx, filepath.Join(dir, "postlist.db"))
	if err != nil {
		return result{}, err
	}
	defer st.Close()
	if _, err := st.CreateList(ctx, list); err != nil {
		return result{}, err
	}
	ix, err := index.Load(ctx, st, "+", zap.NewNop())
	if err != nil {
		return result{}, err
	}
	srv := lmtp.New(lmtp.Options{
		Store: st, Resolve: ix.Resolve, Hostname: "bench.test", Log: zap.NewNop(),
		MaxMessageBytes: 10 << 20, MaxSessions: 64,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return result{}, err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-served
	}()

	msg := makeMessage(size)
	var stop atomic.Bool
	var wg sync.WaitGroup
	lat := make([][]time.Duration, sessions)
	errs := make(chan error, sessions)
	before := srv.Stats()
	start := time.Now()
	time.AfterFunc(dur, func() { stop.Store(true) })
	for i := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := session(ln.Addr().String(), msg, &stop)
			lat[i] = l
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	var failed []error
	for err := range errs {
		failed = append(failed, err)
	}
	if err := errors.Join(failed...); err != nil {
		return result{}, err
	}
	after := srv.Stats()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	if len(all) == 0 {
		return result{}, errors.New("no message sent")
	}
	if got := after.Messages - before.Messages; got != uint64(len(all)) {
		return result{}, fmt.Errorf("clients got %d replies of 250, server committed %d", len(all), got)
	}
	return result{
		messages: len(all),
		commits:  after.Commits - before.Commits,
		elapsed:  elapsed,
		p50:      all[len(all)/2],
		p99:      all[len(all)*99/100],
	}, nil
}

// session sends msg over one connection until stop, and returns the time
// from MAIL to the last 250 of each message.
func session(addr string, msg []byte, stop *atomic.Bool) ([]time.Duration, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := smtp.NewClientLMTP(conn)
	defer c.Close()
	if err := c.Hello("bench.client"); err != nil {
		return nil, err
	}
	var lat []time.Duration
	for !stop.Load() {
		t0 := time.Now()
		if err := c.Mail("sender@example.com", &smtp.MailOptions{Size: int64(len(msg))}); err != nil {
			return lat, err
		}
		if err := c.Rcpt(list, nil); err != nil {
			return lat, err
		}
		w, err := c.Data()
		if err != nil {
			return lat, err
		}
		if _, err := w.Write(msg); err != nil {
			return lat, err
		}
		if _, err := w.CloseWithLMTPResponse(); err != nil {
			return lat, err
		}
		lat = append(lat, time.Since(t0))
	}
	return lat, c.Quit()
}

// makeMessage builds a plain message of exactly size bytes.
func makeMessage(size int) []byte {
	var b strings.Builder
	b.WriteString("Received: from mx.example.net (mx.example.net [192.0.2.7])\r\n" +
		"\tby mail.example.org (Postfix) with ESMTP id 4F1B2C3D4E\r\n\tfor <" + list + ">; Wed, 26 Nov 2025 07:11:00 +0000\r\n" +
		"From: Sender <sender@example.com>\r\nTo: " + list + "\r\nMessage-ID: <bench@example.com>\r\n" +
		"Subject: benchmark\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	line := strings.Repeat("lorem ipsum dolor sit amet ", 2) + "\r\n"
	for b.Len()+len(line) <= size {
		b.WriteString(line)
	}
	b.WriteString(strings.Repeat("x", size-b.Len()-2) + "\r\n")
	return []byte(b.String())
}
