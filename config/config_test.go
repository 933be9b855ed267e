package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDefaultsAreValid(t *testing.T) {
	cfg, err := Load(filepath.Join(t.TempDir(), "missing.toml"), false)
	if err != nil {
		t.Fatalf("defaults: %v", err)
	}
	if got := cfg.LMTPAddr().String(); got != "inet:127.0.0.1:8024" {
		t.Errorf("LMTPAddr = %q", got)
	}
	if got := cfg.MTA.MilterListen.String(); got != "inet:127.0.0.1:8025" {
		t.Errorf("milter_listen = %q", got)
	}
	if got := cfg.MTA.PolicyListen.String(); got != "inet:127.0.0.1:8027" {
		t.Errorf("policy_listen = %q", got)
	}
	if cfg.Database.Path != "var/postlist.db" {
		t.Errorf("database path = %q", cfg.Database.Path)
	}
	if got := cfg.Database.Retention.D(); got != 7*24*time.Hour {
		t.Errorf("retention = %v, want 7 days", got)
	}
	if h := cfg.HTTP; h.ReadTimeout.D() != 30*time.Second || h.WriteTimeout.D() != 30*time.Second ||
		h.IdleTimeout.D() != time.Minute || h.MaxConnections != 256 {
		t.Errorf("http limits = %+v, want 30s/30s/60s and 256 connections", h)
	}
}

func TestExplicitMissingFileFails(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "missing.toml"), true); err == nil {
		t.Fatal("explicit missing config accepted")
	}
}

func TestParseGood(t *testing.T) {
	text := `
[database]
path = "/var/lib/postlist/postlist.db"
retention = "12h"
group = "root"

[mta]
lmtp_host = "127.0.0.2"
lmtp_port = 9024
milter_listen = "unix:/run/postlist/milter.sock"
milter_socket_mode = "0640"
smtp_host = "127.0.0.1"
smtp_port = 10025
smtp_pass = "hunter2"
verp_delimiter = "+"
max_recipients = 100
max_sessions_per_connection = 50
delivery_retry_period = "2d12h"
smtp_connect_timeout = "10s"
smtp_data_timeout = "15m"
max_message_size = "20M"

[http]
listen = "127.0.0.1:9026"
unsubscribe_link_life = "90d"
read_timeout = "5s"
idle_timeout = "2m"
max_connections = 0

[postfix]
map_dir = "/var/lib/postlist/data"
postmap_command = "/usr/sbin/postmap"
transport_file_type = "regex"

[site]
owner = "admin@example.org"
pending_request_life = "1d"

[log]
format = "json"
level = "debug"
`
	cfg, err := Parse("t.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"lmtp", cfg.LMTPAddr().String(), "inet:127.0.0.2:9024"},
		{"milter", cfg.MTA.MilterListen, Listen{Network: "unix", Address: "/run/postlist/milter.sock"}},
		{"mode", cfg.MTA.MilterSocketMode, FileMode(0o640)},
		{"smtp", cfg.SMTPAddr(), "127.0.0.1:10025"},
		{"retry", cfg.MTA.DeliveryRetryPeriod.D(), 60 * time.Hour},
		{"retention", cfg.Database.Retention.D(), 12 * time.Hour},
		{"group", cfg.Database.Group, "root"},
		{"connect timeout", cfg.MTA.SMTPConnectTimeout.D(), 10 * time.Second},
		{"command timeout (default)", cfg.MTA.SMTPCommandTimeout.D(), 5 * time.Minute},
		{"data timeout", cfg.MTA.SMTPDataTimeout.D(), 15 * time.Minute},
		{"pending request life", cfg.Site.PendingRequestLife.D(), 24 * time.Hour},
		{"moderator request life (default)", cfg.Site.ModeratorRequestLife.D(), 180 * 24 * time.Hour},
		{"unsubscribe link life", cfg.HTTP.UnsubscribeLinkLife.D(), 90 * 24 * time.Hour},
		{"VERP bounce window (default)", cfg.MTA.VERPBounceWindow.D(), 30 * 24 * time.Hour},
		{"size", cfg.MTA.MaxMessageSize, Size(20 << 20)},
		{"sessions", cfg.MTA.MaxSessionsPerConnection, 50},
		{"autoresponses (default)", cfg.MTA.MaxAutoresponsesPerDay, 10},
		{"filetype", cfg.Postfix.TransportFileType, "regex"},
		{"http read timeout", cfg.HTTP.ReadTimeout.D(), 5 * time.Second},
		{"http write timeout (default)", cfg.HTTP.WriteTimeout.D(), 30 * time.Second},
		{"http idle timeout", cfg.HTTP.IdleTimeout.D(), 2 * time.Minute},
		{"http max connections (0 = no limit)", cfg.HTTP.MaxConnections, 0},
		{"pass", cfg.MTA.SMTPPass.Reveal(), "hunter2"},
		{"pass hidden", cfg.MTA.SMTPPass.String(), "********"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
}

// TestBadConfigs pins the error text: an admin must be told file, line and
// key for every kind of mistake.
func TestBadConfigs(t *testing.T) {
	cases := []struct {
		name, text, want string
	}{
		{"unknown key", "[mta]\nlmtp_host = \"127.0.0.1\"\nlmtp_prot = 8024\n", "bad.toml:3: mta.lmtp_prot: unknown key"},
		{"unknown table", "[mailman]\nx = 1\n", "bad.toml:1: mailman: unknown key"},
		{"port range", "[mta]\n\nlmtp_port = 99999\n", "bad.toml:3: mta.lmtp_port: port 99999 out of range 1-65535"},
		{"port type", "[mta]\nsmtp_port = \"25\"\n", "bad.toml:2: mta.smtp_port: want a port number"},
		{"listen syntax", "[mta]\nmilter_listen = \"127.0.0.1:8025\"\n", "bad.toml:2: mta.milter_listen: \"127.0.0.1:8025\": want inet:HOST:PORT or unix:/PATH"},
		{"policy listen syntax", "[mta]\npolicy_listen = \"8027\"\n", "bad.toml:2: mta.policy_listen: \"8027\": want inet:HOST:PORT or unix:/PATH"},
		{"policy on the milter's address", "[mta]\nmilter_listen = \"inet:127.0.0.1:9000\"\npolicy_listen = \"inet:127.0.0.1:9000\"\n",
			"bad.toml:3: mta.policy_listen: inet:127.0.0.1:9000 is also milter_listen"},
		{"policy on the socketmap's address", "[mta]\npolicy_listen = \"unix:/run/p.sock\"\n[http]\nsocketmap_listen = \"unix:/run/p.sock\"\n",
			"bad.toml:2: mta.policy_listen: unix:/run/p.sock is also [http] socketmap_listen"},
		{"duration", "[mta]\ndelivery_retry_period = \"soon\"\n", "bad.toml:2: mta.delivery_retry_period: \"soon\": want a duration"},
		{"retention", "[database]\n\nretention = \"forever\"\n", "bad.toml:3: database.retention: \"forever\": want a duration"},
		{"unknown group", "[database]\ngroup = \"no-such-group-postlist\"\n", "bad.toml:2: database.group: \"no-such-group-postlist\": no such group"},
		{"negative retention", "[database]\nretention = \"-12h\"\n", "bad.toml:2: database.retention: \"-12h\": must not be negative"},
		{"delimiter", "[mta]\n# comment\nverp_delimiter = \"-\"\n", "bad.toml:3: mta.verp_delimiter: \"-\": want one character"},
		{"log format", "[log]\nformat = \"xml\"\n", "bad.toml:2: log.format: \"xml\": want console or json"},
		{"syntax", "[mta]\nlmtp_port = = 1\n", "bad.toml:2"},
		{"mode", "[mta]\nmilter_socket_mode = \"0999\"\n", "bad.toml:2: mta.milter_socket_mode: \"0999\": want an octal mode"},
		{"owner", "[site]\nowner = \"nobody\"\n", "bad.toml:2: site.owner: \"nobody\": want an email address"},
		{"file type", "[postfix]\ntransport_file_type = \"btree\"\n", "bad.toml:2: postfix.transport_file_type"},
		{"negative", "[mta]\nmax_recipients = -1\n", "bad.toml:2: mta.max_recipients: -1: must not be negative"},
		{"negative autoresponses", "[mta]\nmax_autoresponses_per_day = -1\n", "bad.toml:2: mta.max_autoresponses_per_day: -1: must not be negative"},
		{"zero request life", "[site]\nmoderator_request_life = \"0d\"\n", "bad.toml:2: site.moderator_request_life: 0s: must be positive"},
		{"zero bounce window", "[mta]\nverp_bounce_window = \"0d\"\n", "bad.toml:2: mta.verp_bounce_window: 0s: must be positive"},
		{"negative link life", "[http]\nlisten = \"127.0.0.1:1\"\nunsubscribe_link_life = \"-1d\"\n", "bad.toml:3: http.unsubscribe_link_life"},
		{"zero timeout", "[mta]\n\nsmtp_command_timeout = \"0\"\n", "bad.toml:3: mta.smtp_command_timeout: 0s: must be positive"},
		{"zero http read timeout", "[http]\nread_timeout = \"0s\"\n", "bad.toml:2: http.read_timeout: 0s: must be positive"},
		{"negative http write timeout", "[http]\n\nwrite_timeout = \"-1s\"\n", "bad.toml:3: http.write_timeout: \"-1s\": must not be negative"},
		{"zero http idle timeout", "[http]\nidle_timeout = \"0\"\n", "bad.toml:2: http.idle_timeout: 0s: must be positive"},
		{"negative http connections", "[http]\nmax_connections = -1\n", "bad.toml:2: http.max_connections: -1: must not be negative"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("bad.toml", []byte(c.text))
			if err == nil {
				t.Fatalf("accepted:\n%s", c.text)
			}
			if !strings.HasPrefix(err.Error(), c.want) {
				t.Errorf("error\n got: %s\nwant prefix: %s", err, c.want)
			}
		})
	}
}

// TestRetentionZeroKeepsEverything: 0 is a valid retention, written as a
// duration or a bare number, and means no purge.
func TestRetentionZeroKeepsEverything(t *testing.T) {
	for _, text := range []string{"[database]\nretention = \"0\"\n", "[database]\nretention = 0\n", "[database]\nretention = \"0s\"\n"} {
		cfg, err := Parse("t.toml", []byte(text))
		if err != nil {
			t.Errorf("%q: %v", text, err)
			continue
		}
		if got := cfg.Database.Retention.D(); got != 0 {
			t.Errorf("%q: retention = %v, want 0", text, got)
		}
	}
}

func TestRelativePathsFollowConfigFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "postlist.toml")
	if err := os.WriteFile(p, []byte("[database]\npath = \"db/postlist.db\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(p, true)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "db/postlist.db"); cfg.Database.Path != want {
		t.Errorf("path = %q, want %q", cfg.Database.Path, want)
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"5d": 5 * 24 * time.Hour, "1w": 7 * 24 * time.Hour, "90s": 90 * time.Second,
		"1d12h": 36 * time.Hour, "15m": 15 * time.Minute,
	} {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "5x", "-1d"} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) accepted", in)
		}
	}
}

// TestExampleConfig keeps contrib/postlist.toml honest: it parses, its
// values are the defaults, and it mentions every key the code accepts.
func TestExampleConfig(t *testing.T) {
	data, err := os.ReadFile("../contrib/postlist.toml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse("contrib/postlist.toml", data)
	if err != nil {
		t.Fatalf("example config: %v", err)
	}
	def := Default()
	if cfg.MTA != def.MTA || cfg.HTTP != def.HTTP || cfg.Postfix != def.Postfix || cfg.Database != def.Database {
		t.Errorf("example values differ from defaults:\n%+v\n%+v", cfg.MTA, def.MTA)
	}
	text := string(data)
	for _, key := range allKeys(reflect.TypeOf(Config{})) {
		if !strings.Contains(text, key+" =") {
			t.Errorf("contrib/postlist.toml does not document %q", key)
		}
	}
}

func allKeys(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("toml")
		if tag == "" || tag == "-" {
			continue
		}
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(Listen{}) {
			keys = append(keys, allKeys(f.Type)...)
			continue
		}
		keys = append(keys, tag)
	}
	return keys
}
