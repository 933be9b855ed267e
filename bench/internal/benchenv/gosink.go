package benchenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"
)

// ServeGoSink serves SMTP on a free loopback port, accepting and
// discarding everything, until SIGTERM or SIGINT: the sink a benchmark
// runs in a child process of its own when smtp-sink is not there. It
// prints its address on standard output first; rcpt, if not nil, is
// called for every RCPT.
func ServeGoSink(rcpt func()) error {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return sinkSession{rcpt}, nil
	}))
	srv.Domain = "sink.bench.test"
	srv.MaxRecipients = 1000
	srv.MaxMessageBytes = 50 << 20
	srv.ReadTimeout, srv.WriteTimeout = time.Minute, time.Minute
	srv.ErrorLog = quietLog{}
	fmt.Println(ln.Addr().String())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, smtp.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

type quietLog struct{}

func (quietLog) Printf(string, ...any) {}
func (quietLog) Println(...any)        {}

type sinkSession struct{ rcpt func() }

func (sinkSession) Reset()                               {}
func (sinkSession) Logout() error                        { return nil }
func (sinkSession) Mail(string, *smtp.MailOptions) error { return nil }

func (s sinkSession) Rcpt(string, *smtp.RcptOptions) error {
	if s.rcpt != nil {
		s.rcpt()
	}
	return nil
}

func (sinkSession) Data(r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}
