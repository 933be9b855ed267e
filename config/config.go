// Package config loads postlist's TOML configuration.
//
// Every key is optional: the zero file is a working loopback setup with the
// database under ./var, so a newcomer can run the daemon before writing any
// configuration. Key names follow Mailman 3's [mta] section so that a Mailman
// admin recognises them. Errors name the file, the line and the key, because
// an admin fixing a broken config at 3 a.m. should not have to guess.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// DefaultPath is where postlist looks when -c is not given. A missing file
// at the default path is not an error: the embedded defaults apply.
const DefaultPath = "/etc/postlist/postlist.toml"

// Config is the whole configuration. Field tags are the TOML key names.
type Config struct {
	// File is the file the configuration came from ("" for defaults only).
	File string `toml:"-"`

	// name and lines locate keys for errors found after decoding.
	name  string
	lines func(key ...string) int

	Database Database `toml:"database"`
	MTA      MTA      `toml:"mta"`
	HTTP     HTTP     `toml:"http"`
	Postfix  Postfix  `toml:"postfix"`
	Site     Site     `toml:"site"`
	Log      Log      `toml:"log"`
}

// Database says where the SQLite file lives and how long finished work
// stays in it.
type Database struct {
	Path string `toml:"path"`
	// Retention is how long a message is kept once nothing is pending on
	// it (deliveries all made, not held, processed), with its deliveries;
	// 0 keeps everything. Without it every post to a large list would
	// add a row per member, forever.
	Retention Duration `toml:"retention"`
	// Group, when set, owns the database files with mode 0660, so that
	// members of the group (an operator's account) may run the CLI;
	// otherwise the files are 0600, the daemon's user's alone.
	Group string `toml:"group"`
}

// MTA holds the Postfix-facing settings, named as in Mailman's [mta].
type MTA struct {
	LMTPHost string `toml:"lmtp_host"`
	LMTPPort Port   `toml:"lmtp_port"`
	// LMTPListen, when set, overrides lmtp_host/lmtp_port; it takes the
	// Postfix forms inet:HOST:PORT or unix:/PATH so the same string can be
	// pasted into transport maps.
	LMTPListen   Listen `toml:"lmtp_listen"`
	MilterListen Listen `toml:"milter_listen"`
	// MilterSocketMode and MilterSocketGroup apply to unix sockets only,
	// so Postfix (group postfix) can connect without making the socket
	// world-writable.
	MilterSocketMode  FileMode `toml:"milter_socket_mode"`
	MilterSocketGroup string   `toml:"milter_socket_group"`
	// PolicyListen is the Postfix SMTPD access policy service (package
	// policy), reached through the postlist_rcpt restriction class for
	// list domains only. A unix socket gets milter_socket_mode and
	// milter_socket_group: the same smtpd processes connect to both.
	PolicyListen Listen `toml:"policy_listen"`

	SMTPHost                 string   `toml:"smtp_host"`
	SMTPPort                 Port     `toml:"smtp_port"`
	SMTPUser                 string   `toml:"smtp_user"`
	SMTPPass                 Secret   `toml:"smtp_pass"`
	SMTPSecureMode           string   `toml:"smtp_secure_mode"`
	SMTPVerifyCert           bool     `toml:"smtp_verify_cert"`
	VERPDelimiter            string   `toml:"verp_delimiter"`
	MaxRecipients            int      `toml:"max_recipients"`
	MaxSessionsPerConnection int      `toml:"max_sessions_per_connection"`
	MaxDeliveryThreads       int      `toml:"max_delivery_threads"`
	DeliveryRetryPeriod      Duration `toml:"delivery_retry_period"`
	DeliveryRetryInterval    Duration `toml:"delivery_retry_interval"`
	// How long delivery waits for the smart host: to connect, for the
	// reply to each command, and after the message's final dot (RFC 5321
	// §4.5.3.2 suggests 5 and 10 minutes for the last two). A timeout
	// defers the row, like any lost connection.
	SMTPConnectTimeout Duration `toml:"smtp_connect_timeout"`
	SMTPCommandTimeout Duration `toml:"smtp_command_timeout"`
	SMTPDataTimeout    Duration `toml:"smtp_data_timeout"`
	// MaxAutoresponsesPerDay is how many automatic mails (command
	// results, confirmation requests, notices to posters) one address
	// gets per UTC day, the last with a note saying so (Mailman's key);
	// 0 means no limit.
	MaxAutoresponsesPerDay int `toml:"max_autoresponses_per_day"`
	// VERPBounceWindow is how long after it was sent a signed VERP return
	// path still makes its bounces score: older ones are accepted (never
	// bounce a bounce) and ignored, so a Return-Path someone saw cannot
	// be replayed against the member for ever.
	VERPBounceWindow Duration `toml:"verp_bounce_window"`

	// Intake limits (postlist additions).
	MaxMessageSize     Size     `toml:"max_message_size"`
	MaxRcptsPerMessage int      `toml:"max_rcpts_per_transaction"`
	MaxLMTPSessions    int      `toml:"max_lmtp_sessions"`
	LMTPIdleTimeout    Duration `toml:"lmtp_idle_timeout"`
	MilterTimeout      Duration `toml:"milter_timeout"`
}

// HTTP is the small web listener: one-click unsubscribe, metrics, health.
type HTTP struct {
	Listen string `toml:"listen"`
	// BaseURL is the public URL one-click unsubscribe links use; empty
	// means no https List-Unsubscribe link is advertised.
	BaseURL string `toml:"base_url"`
	// UnsubscribeLinkLife is how long a one-click unsubscribe link works
	// after the message carrying it was sent.
	UnsubscribeLinkLife Duration `toml:"unsubscribe_link_life"`
	// SocketmapListen serves Postfix socketmap lookups when set.
	SocketmapListen Listen `toml:"socketmap_listen"`
	// ReadTimeout bounds reading a whole request, body included;
	// WriteTimeout writing the answer; IdleTimeout how long a keep-alive
	// connection may wait for its next request. The listener shares the
	// process with the milter and LMTP, so no client may hold a
	// connection open forever.
	ReadTimeout  Duration `toml:"read_timeout"`
	WriteTimeout Duration `toml:"write_timeout"`
	IdleTimeout  Duration `toml:"idle_timeout"`
	// MaxConnections caps the connections served at once; further ones
	// wait in the kernel's accept queue. 0 means no limit.
	MaxConnections int `toml:"max_connections"`
}

// Postfix controls the maps genaliases writes.
type Postfix struct {
	MapDir            string `toml:"map_dir"`
	PostmapCommand    string `toml:"postmap_command"`
	TransportFileType string `toml:"transport_file_type"`
}

// Site holds site-wide identity.
type Site struct {
	Owner string `toml:"owner"`
	// PendingRequestLife is how long a confirmation request (join,
	// leave) waits for the person; ModeratorRequestLife how long a request
	// or a held post can be decided by mail. Mailman's names and
	// defaults (3 days, 180 days).
	PendingRequestLife   Duration `toml:"pending_request_life"`
	ModeratorRequestLife Duration `toml:"moderator_request_life"`
}

// Log selects the log encoding and level.
type Log struct {
	Format string `toml:"format"`
	Level  string `toml:"level"`
}

// Default returns the embedded defaults: loopback ports, database under
// ./var. It is what `postlist serve` runs with when no file exists.
func Default() *Config {
	return &Config{
		Database: Database{Path: "var/postlist.db", Retention: Duration(7 * 24 * time.Hour)},
		MTA: MTA{
			LMTPHost:                 "127.0.0.1",
			LMTPPort:                 8024,
			MilterListen:             Listen{Network: "tcp", Address: "127.0.0.1:8025"},
			MilterSocketMode:         0o660,
			PolicyListen:             Listen{Network: "tcp", Address: "127.0.0.1:8027"},
			SMTPHost:                 "127.0.0.1",
			SMTPPort:                 25,
			SMTPSecureMode:           "smtp",
			SMTPVerifyCert:           true,
			VERPDelimiter:            "+",
			MaxRecipients:            500,
			MaxSessionsPerConnection: 0,
			MaxDeliveryThreads:       20,
			DeliveryRetryPeriod:      Duration(5 * 24 * time.Hour),
			DeliveryRetryInterval:    Duration(15 * time.Minute),
			SMTPConnectTimeout:       Duration(30 * time.Second),
			SMTPCommandTimeout:       Duration(5 * time.Minute),
			SMTPDataTimeout:          Duration(10 * time.Minute),
			MaxAutoresponsesPerDay:   10,
			VERPBounceWindow:         Duration(30 * 24 * time.Hour),
			MaxMessageSize:           Size(10 << 20),
			MaxRcptsPerMessage:       1000,
			MaxLMTPSessions:          64,
			LMTPIdleTimeout:          Duration(5 * time.Minute),
			MilterTimeout:            Duration(10 * time.Second),
		},
		HTTP: HTTP{
			Listen:              "127.0.0.1:8026",
			ReadTimeout:         Duration(30 * time.Second),
			WriteTimeout:        Duration(30 * time.Second),
			IdleTimeout:         Duration(60 * time.Second),
			MaxConnections:      256,
			UnsubscribeLinkLife: Duration(365 * 24 * time.Hour),
		},
		Postfix: Postfix{
			MapDir:            "var/data",
			PostmapCommand:    "postmap",
			TransportFileType: "hash",
		},
		Site: Site{
			Owner:                "postmaster@localhost",
			PendingRequestLife:   Duration(3 * 24 * time.Hour),
			ModeratorRequestLife: Duration(180 * 24 * time.Hour),
		},
		Log: Log{Format: "console", Level: "info"},
	}
}

// Error is a configuration error located in a file.
type Error struct {
	File string
	Line int    // 0 when unknown
	Key  string // dotted key, "" when the error is not about one key
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": %s", e.Key)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads path over the defaults. When path is DefaultPath and the file
// does not exist, the defaults are returned: an explicit -c must exist.
func Load(path string, explicit bool) (*Config, error) {
	cfg := Default()
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && !explicit {
			return cfg, cfg.Validate()
		}
		return nil, fmt.Errorf("read config: %w", err)
	}
	if err := cfg.parse(path, data); err != nil {
		return nil, err
	}
	cfg.File = path
	cfg.resolvePaths(filepath.Dir(path))
	return cfg, cfg.Validate()
}

// Parse decodes TOML text over the defaults; name is used in errors.
func Parse(name string, data []byte) (*Config, error) {
	cfg := Default()
	if err := cfg.parse(name, data); err != nil {
		return nil, err
	}
	cfg.File = name
	return cfg, cfg.Validate()
}

func (c *Config) parse(name string, data []byte) error {
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			msg := pe.Message
			if inner := errors.Unwrap(pe); inner != nil {
				msg = inner.Error()
			}
			return &Error{File: name, Line: pe.Position.Line, Key: pe.LastKey, Msg: msg}
		}
		return &Error{File: name, Msg: strings.TrimPrefix(err.Error(), "toml: ")}
	}
	if und := md.Undecoded(); len(und) > 0 {
		k := und[0]
		return &Error{File: name, Line: keyLine(data, k), Key: k.String(), Msg: "unknown key"}
	}
	c.lines = func(key ...string) int { return keyLine(data, key) }
	c.name = name
	return nil
}

// resolvePaths makes relative paths relative to the config file, so a
// config under /etc works no matter where the daemon was started from.
func (c *Config) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.Database.Path)
	abs(&c.Postfix.MapDir)
}

// Validate checks values that TOML types alone cannot.
func (c *Config) Validate() error {
	bad := func(msg string, key ...string) error {
		line := 0
		if c.lines != nil {
			line = c.lines(key...)
		}
		name := c.name
		if name == "" {
			name = "(defaults)"
		}
		return &Error{File: name, Line: line, Key: strings.Join(key, "."), Msg: msg}
	}
	if c.Database.Path == "" {
		return bad("must not be empty", "database", "path")
	}
	if g := c.Database.Group; g != "" {
		if _, err := user.LookupGroup(g); err != nil {
			return bad(fmt.Sprintf("%q: no such group", g), "database", "group")
		}
	}
	if c.MTA.LMTPHost == "" && c.MTA.LMTPListen.IsZero() {
		return bad("must not be empty", "mta", "lmtp_host")
	}
	if c.MTA.SMTPHost == "" {
		return bad("must not be empty", "mta", "smtp_host")
	}
	if c.MTA.MilterListen.IsZero() {
		return bad("must not be empty", "mta", "milter_listen")
	}
	if c.MTA.PolicyListen.IsZero() {
		return bad("must not be empty", "mta", "policy_listen")
	}
	if c.MTA.PolicyListen == c.MTA.MilterListen {
		return bad(fmt.Sprintf("%s is also milter_listen", c.MTA.PolicyListen), "mta", "policy_listen")
	}
	if c.MTA.PolicyListen == c.HTTP.SocketmapListen {
		return bad(fmt.Sprintf("%s is also [http] socketmap_listen", c.MTA.PolicyListen), "mta", "policy_listen")
	}
	if d := c.MTA.VERPDelimiter; len(d) != 1 || strings.ContainsAny(d, "@-=\"\\ \t<>") {
		return bad(fmt.Sprintf("%q: want one character such as \"+\"", d), "mta", "verp_delimiter")
	}
	switch c.MTA.SMTPSecureMode {
	case "smtp", "starttls", "smtps":
	default:
		return bad(fmt.Sprintf("%q: want smtp, starttls or smtps", c.MTA.SMTPSecureMode), "mta", "smtp_secure_mode")
	}
	for _, n := range []struct {
		v            int
		section, key string
	}{
		{c.MTA.MaxRecipients, "mta", "max_recipients"},
		{c.MTA.MaxSessionsPerConnection, "mta", "max_sessions_per_connection"},
		{c.MTA.MaxDeliveryThreads, "mta", "max_delivery_threads"},
		{c.MTA.MaxRcptsPerMessage, "mta", "max_rcpts_per_transaction"},
		{c.MTA.MaxLMTPSessions, "mta", "max_lmtp_sessions"},
		{c.HTTP.MaxConnections, "http", "max_connections"},
		{c.MTA.MaxAutoresponsesPerDay, "mta", "max_autoresponses_per_day"},
	} {
		if n.v < 0 {
			return bad(fmt.Sprintf("%d: must not be negative", n.v), n.section, n.key)
		}
	}
	if c.MTA.MaxMessageSize <= 0 {
		return bad("must be positive", "mta", "max_message_size")
	}
	for _, d := range []struct {
		v            Duration
		section, key string
	}{
		{c.MTA.SMTPConnectTimeout, "mta", "smtp_connect_timeout"},
		{c.MTA.SMTPCommandTimeout, "mta", "smtp_command_timeout"},
		{c.MTA.SMTPDataTimeout, "mta", "smtp_data_timeout"},
		{c.Site.PendingRequestLife, "site", "pending_request_life"},
		{c.Site.ModeratorRequestLife, "site", "moderator_request_life"},
		{c.MTA.VERPBounceWindow, "mta", "verp_bounce_window"},
		{c.HTTP.UnsubscribeLinkLife, "http", "unsubscribe_link_life"},
		{c.HTTP.ReadTimeout, "http", "read_timeout"},
		{c.HTTP.WriteTimeout, "http", "write_timeout"},
		{c.HTTP.IdleTimeout, "http", "idle_timeout"},
	} {
		if d.v.D() <= 0 {
			return bad(fmt.Sprintf("%v: must be positive", d.v.D()), d.section, d.key)
		}
	}
	if c.HTTP.Listen != "" {
		if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
			return bad(fmt.Sprintf("%q: want HOST:PORT", c.HTTP.Listen), "http", "listen")
		}
	}
	if u := c.HTTP.BaseURL; u != "" && !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") {
		return bad(fmt.Sprintf("%q: want an http(s):// URL", u), "http", "base_url")
	}
	switch c.Postfix.TransportFileType {
	case "hash", "lmdb", "cdb", "regex":
	default:
		return bad(fmt.Sprintf("%q: want hash, lmdb, cdb or regex", c.Postfix.TransportFileType), "postfix", "transport_file_type")
	}
	if c.Postfix.PostmapCommand == "" {
		return bad("must not be empty", "postfix", "postmap_command")
	}
	if c.Site.Owner == "" || !strings.Contains(c.Site.Owner, "@") {
		return bad(fmt.Sprintf("%q: want an email address", c.Site.Owner), "site", "owner")
	}
	switch c.Log.Format {
	case "console", "json":
	default:
		return bad(fmt.Sprintf("%q: want console or json", c.Log.Format), "log", "format")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return bad(fmt.Sprintf("%q: want debug, info, warn or error", c.Log.Level), "log", "level")
	}
	return nil
}

// LMTPAddr is where the LMTP server listens.
func (c *Config) LMTPAddr() Listen {
	if !c.MTA.LMTPListen.IsZero() {
		return c.MTA.LMTPListen
	}
	return Listen{Network: "tcp", Address: net.JoinHostPort(c.MTA.LMTPHost, strconv.Itoa(int(c.MTA.LMTPPort)))}
}

// SMTPAddr is the smart host deliveries go to.
func (c *Config) SMTPAddr() string {
	return net.JoinHostPort(c.MTA.SMTPHost, strconv.Itoa(int(c.MTA.SMTPPort)))
}

// keyLine finds the line defining key in TOML text. The TOML library keeps
// key positions private, so unknown keys and value errors found after
// decoding are located by a small scan instead: table headers and bare or
// quoted keys, which is all our flat schema uses.
func keyLine(data []byte, key []string) int {
	if len(key) == 0 {
		return 0
	}
	table := strings.Join(key[:len(key)-1], ".")
	last := key[len(key)-1]
	cur := ""
	for i, raw := range strings.Split(string(data), "\n") {
		line := strings.TrimSpace(raw)
		if strings.HasPrefix(line, "[") {
			name := strings.Trim(line, "[] \t")
			if j := strings.Index(line, "]"); j > 0 {
				name = strings.TrimSpace(strings.Trim(line[:j], "[ "))
			}
			cur = name
			if len(key) >= 1 && cur == strings.Join(key, ".") {
				return i + 1
			}
			continue
		}
		eq := strings.Index(line, "=")
		if eq < 0 {
			continue
		}
		k := strings.Trim(strings.TrimSpace(line[:eq]), `"'`)
		full := k
		if cur != "" {
			full = cur + "." + k
		}
		if full == table+"."+last || (table == "" && full == last) {
			return i + 1
		}
	}
	return 0
}
