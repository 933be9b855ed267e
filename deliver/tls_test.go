package deliver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"postlist/internal/testenv/storetest"
	"postlist/store"
)

// authServer is a smart host that requires TLS and AUTH PLAIN, the way a
// relay on another machine would be set up.
type authServer struct {
	Addr string
	Pool *x509.CertPool // trusts the server's certificate

	mu       sync.Mutex
	authed   []string // users that authenticated
	tlsSeen  int      // transactions that ran over TLS
	accepted []string // recipients of completed transactions
}

const (
	authUser = "postlist"
	authPass = "s3cret-Pa55"
)

func startAuthServer(t *testing.T, implicitTLS bool) *authServer {
	t.Helper()
	cert, pool := selfSigned(t)
	a := &authServer{Pool: pool}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &authSession{srv: a, conn: c}, nil
	}))
	srv.Domain = "relay.test"
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	srv.ErrorLog = nopLogger{}
	var ln net.Listener
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if implicitTLS {
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	a.Addr = ln.Addr().String()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != nil && !errors.Is(err, smtp.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			t.Errorf("auth server: %v", err)
		}
	})
	return a
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}
func (nopLogger) Println(...any)        {}

// selfSigned makes a certificate for 127.0.0.1 and a pool trusting it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "relay.test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

type authSession struct {
	srv   *authServer
	conn  *smtp.Conn
	user  string
	rcpts []string
}

func (s *authSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *authSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != authUser || pass != authPass {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "authentication failed"}
		}
		s.user = user
		s.srv.mu.Lock()
		s.srv.authed = append(s.srv.authed, user)
		s.srv.mu.Unlock()
		return nil
	}), nil
}

func (s *authSession) Mail(string, *smtp.MailOptions) error {
	if s.user == "" {
		return smtp.ErrAuthRequired
	}
	return nil
}

func (s *authSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *authSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	if isTLS {
		s.srv.tlsSeen++
	}
	s.srv.accepted = append(s.srv.accepted, s.rcpts...)
	return nil
}

func (s *authSession) Reset()        { s.rcpts = nil }
func (s *authSession) Logout() error { return nil }

func TestTLSAndAuth(t *testing.T) {
	tests := []struct {
		name        string
		implicitTLS bool
		mode        string
		pass        string
		trust       bool // give the deliverer the server's certificate
		verify      bool
		wantSent    bool
		wantReply   string // for a deferral
	}{
		{name: "STARTTLS with AUTH, verified", mode: "starttls", pass: authPass, trust: true, verify: true, wantSent: true},
		{name: "SMTPS with AUTH, verified", implicitTLS: true, mode: "smtps", pass: authPass, trust: true, verify: true, wantSent: true},
		{name: "STARTTLS, unverified certificate accepted when verification is off", mode: "starttls", pass: authPass, verify: false, wantSent: true},
		{name: "untrusted certificate defers", mode: "starttls", pass: authPass, verify: true, wantReply: "certificate"},
		{name: "wrong password defers without bounces", mode: "starttls", pass: "wrong-Pa55", trust: true, verify: true, wantReply: "535 5.7.8"},
		{name: "plain SMTP where AUTH needs TLS defers", mode: "smtp", pass: authPass, verify: true, wantReply: "AUTH"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, l := storetest.OpenList(t, testList)
			srv := startAuthServer(t, tc.implicitTLS)
			rcpts := members(3)
			msg := queue(t, st, l, rcpts, true)

			core, logs := observer.New(zapcore.DebugLevel)
			o := testOptions(t, st, srv.Addr)
			o.Log = zap.New(core)
			o.Workers = 1
			o.SecureMode = tc.mode
			o.User, o.Pass = authUser, tc.pass
			o.VerifyCert = tc.verify
			if tc.trust {
				o.TLSConfig = &tls.Config{RootCAs: srv.Pool}
			}
			d := start(t, o)
			rows := settled(t, st, msg, 10*time.Second)
			d.stop(t)

			srv.mu.Lock()
			accepted, tlsSeen, authed := len(srv.accepted), srv.tlsSeen, len(srv.authed)
			srv.mu.Unlock()
			for _, r := range rows {
				if tc.wantSent {
					if r.State != store.DeliverySent {
						t.Errorf("%s: %s (%s), want sent", r.Recipient, r.State, r.LastReply)
					}
				} else if r.State != store.DeliveryDeferred || !strings.Contains(r.LastReply, tc.wantReply) {
					t.Errorf("%s: %s (%s), want deferred with %q", r.Recipient, r.State, r.LastReply, tc.wantReply)
				}
			}
			if tc.wantSent {
				// One session (one worker): authenticated once, every
				// transaction over TLS.
				if accepted != len(rcpts) || tlsSeen != len(rcpts) || authed != 1 {
					t.Errorf("server: %d accepted, %d over TLS, %d logins; want %d, %d, 1", accepted, tlsSeen, authed, len(rcpts), len(rcpts))
				}
			} else if accepted != 0 {
				t.Errorf("server accepted %d recipients", accepted)
			}
			if bs, _ := st.DeliveryBounces(context.Background(), msg); len(bs) != 0 {
				t.Errorf("bounces %+v: a session problem is never the members' fault", bs)
			}
			for _, e := range logs.All() {
				line := e.Message
				for _, f := range e.Context {
					line += " " + f.String
					if f.Interface != nil {
						if err, ok := f.Interface.(error); ok {
							line += " " + err.Error()
						}
					}
				}
				if strings.Contains(line, tc.pass) {
					t.Errorf("the password leaked into the log: %s", line)
				}
			}
		})
	}
}
