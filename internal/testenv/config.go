package testenv

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/template"
)

// Hostname is the private Postfix's myhostname. Tests see it in Received:
// headers and in the greeting of SMTPAddr and SubmitAddr.
const Hostname = "pfharness.test"

// mainParam is one main.cf setting; the order of a []mainParam is the
// order in the file, which keeps the generated file readable.
type mainParam struct {
	Name, Value string
}

var mainTemplate = template.Must(template.New("main.cf").Parse(
	`# Written by postlist's testenv for a single test; removed with it.
{{range .}}{{.Name}} = {{.Value}}
{{end}}`))

// masterTemplate has no chroot anywhere (the chroot column is "n" on every
// line) because the instance's queue directory has none of the files a
// chroot jail needs, and no port 25 service, so nothing but the two
// loopback listeners accepts mail.
var masterTemplate = template.Must(template.New("master.cf").Parse(
	`# Written by postlist's testenv for a single test; removed with it.
# service type  private unpriv  chroot  wakeup  maxproc command + args
{{.SMTPAddr}} inet n - n - - smtpd
  -o syslog_name=postfix/inbound
{{.SubmitAddr}} inet n - n - - smtpd
  -o syslog_name=postfix/submit
  -o smtpd_milters=
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
  -o syslog_name=postfix/$service_name
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
# Without syslog in a sandbox, maillog_file is the only log, and it
# requires this service.
postlog   unix-dgram n  -       n       -       1       postlogd
`))

// instanceConfig is everything the templates need for one instance.
type instanceConfig struct {
	Base       string // absolute, symlink-free instance directory
	SMTPAddr   string
	SubmitAddr string
	RelayHost  string // relayhost value pointing at the sink
	opts       PostfixOptions
}

func (c *instanceConfig) etcDir() string   { return c.Base + "/etc" }
func (c *instanceConfig) spoolDir() string { return c.Base + "/spool" }
func (c *instanceConfig) dataDir() string  { return c.Base + "/data" }
func (c *instanceConfig) logDir() string   { return c.Base + "/log" }
func (c *instanceConfig) logFile() string  { return c.logDir() + "/maillog" }
func (c *instanceConfig) transportFile() string {
	return c.etcDir() + "/transport"
}

// writesTransportMap reports whether the harness owns transport_maps.
func (c *instanceConfig) writesTransportMap() bool {
	return c.opts.TransportMaps == "" && len(c.opts.ListDomains) > 0
}

func (c *instanceConfig) mainParams() []mainParam {
	o := c.opts

	transportMaps := o.TransportMaps
	if c.writesTransportMap() {
		transportMaps = "hash:" + c.transportFile()
	}
	relayDomains := o.RelayDomains
	if relayDomains == "" {
		relayDomains = strings.Join(o.ListDomains, ", ")
	}
	milterAction := o.MilterDefaultAction
	if milterAction == "" {
		milterAction = "tempfail"
	}

	params := []mainParam{
		{"compatibility_level", "3.6"},
		{"queue_directory", c.spoolDir()},
		{"data_directory", c.dataDir()},
		{"mail_owner", mailOwner},
		{"setgid_group", setgidGroup},
		// postlogd only writes below a listed prefix, matched textually,
		// hence the symlink-free Base.
		{"maillog_file", c.logFile()},
		{"maillog_file_prefixes", c.logDir()},
		{"myhostname", Hostname},
		{"mydomain", Hostname},
		{"myorigin", "$myhostname"},
		// No local delivery: every address is either a list address
		// (LMTP) or remote (the sink).
		{"mydestination", ""},
		{"local_recipient_maps", ""},
		{"local_transport", "error:5.1.1 local delivery is disabled in this test instance"},
		{"alias_maps", ""},
		{"alias_database", ""},
		{"biff", "no"},
		{"inet_interfaces", "loopback-only"},
		{"inet_protocols", "ipv4"},
		{"mynetworks", "127.0.0.0/8"},
		{"smtpd_relay_restrictions", "permit_mynetworks, reject_unauth_destination"},
		// Lets a test on loopback pose as a remote client (see XClient).
		{"smtpd_authorized_xclient_hosts", "127.0.0.0/8"},
		{"smtpd_banner", "$myhostname ESMTP postlist-testenv"},
		{"relay_domains", relayDomains},
		{"transport_maps", transportMaps},
		{"relayhost", c.RelayHost},
		{"default_transport", "smtp"},
		{"recipient_delimiter", "+"},
		{"smtpd_milters", o.Milter},
		{"non_smtpd_milters", ""},
		{"milter_default_action", milterAction},
		{"milter_protocol", "6"},
		// No DNS in tests; every next hop is a numeric loopback address.
		{"smtp_host_lookup", "native"},
		{"lmtp_host_lookup", "native"},
		{"smtp_tls_security_level", "none"},
		{"smtpd_tls_security_level", "none"},
		{"lmtp_tls_security_level", "none"},
		// Retry deferred mail within seconds, not minutes, so that tests of
		// temporary failures finish quickly.
		{"queue_run_delay", "2s"},
		{"minimal_backoff_time", "2s"},
		{"maximal_backoff_time", "4s"},
	}
	// MainCF and ExtraMain replace a generated setting in place instead
	// of appending a duplicate, which Postfix would warn about.
	set := func(name, value string) {
		i := slices.IndexFunc(params, func(p mainParam) bool { return p.Name == name })
		if i >= 0 {
			params[i].Value = value
		} else {
			params = append(params, mainParam{name, value})
		}
	}
	snippet, _ := parseMainCF(o.MainCF) // validate reported errors already
	for _, p := range snippet {
		set(p.Name, p.Value)
	}
	for _, name := range slices.Sorted(maps.Keys(o.ExtraMain)) {
		set(name, o.ExtraMain[name])
	}
	return params
}

// parseMainCF reads main.cf syntax: "name = value" lines, where a line
// that starts with white space continues the previous one, and comment
// and empty lines are skipped (postconf(5), "Syntax").
func parseMainCF(text string) ([]mainParam, error) {
	var out []mainParam
	for n, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "" || strings.HasPrefix(trimmed, "#"):
			continue
		case line[0] == ' ' || line[0] == '\t':
			if len(out) == 0 {
				return nil, fmt.Errorf("main.cf line %d: continuation line before any setting", n+1)
			}
			last := &out[len(out)-1]
			last.Value = strings.TrimSpace(last.Value + " " + trimmed)
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return nil, fmt.Errorf("main.cf line %d: want name = value, got %q", n+1, line)
		}
		out = append(out, mainParam{name, strings.TrimSpace(value)})
	}
	return out, nil
}

func (c *instanceConfig) mainCF() ([]byte, error) {
	var b bytes.Buffer
	if err := mainTemplate.Execute(&b, c.mainParams()); err != nil {
		return nil, fmt.Errorf("main.cf template: %w", err)
	}
	return b.Bytes(), nil
}

func (c *instanceConfig) masterCF() ([]byte, error) {
	var b bytes.Buffer
	if err := masterTemplate.Execute(&b, c); err != nil {
		return nil, fmt.Errorf("master.cf template: %w", err)
	}
	if c.opts.MasterCF != "" {
		b.WriteString("# From PostfixOptions.MasterCF.\n")
		b.WriteString(strings.TrimRight(c.opts.MasterCF, "\n") + "\n")
	}
	return b.Bytes(), nil
}

// transportMap is the source of the hash: transport map routing every list
// domain to the LMTP server.
func (c *instanceConfig) transportMap() []byte {
	next := c.opts.LMTP
	if !strings.HasPrefix(next, "lmtp:") {
		next = "lmtp:" + next
	}
	var b bytes.Buffer
	for _, d := range c.opts.ListDomains {
		fmt.Fprintf(&b, "%s\t%s\n", d, next)
	}
	return b.Bytes()
}

// validate rejects options that would silently produce a broken or
// misleading configuration: a newline in a value would inject settings,
// and list domains without a destination would bounce every list mail.
func (o *PostfixOptions) validate() error {
	single := map[string]string{
		"Milter":              o.Milter,
		"MilterDefaultAction": o.MilterDefaultAction,
		"LMTP":                o.LMTP,
		"TransportMaps":       o.TransportMaps,
		"RelayDomains":        o.RelayDomains,
	}
	for name, v := range single {
		if strings.ContainsAny(v, "\r\n") {
			return fmt.Errorf("%s contains a line break: %q", name, v)
		}
	}
	for _, d := range o.ListDomains {
		if d == "" || strings.ContainsAny(d, " \t\r\n,:") {
			return fmt.Errorf("ListDomains: invalid domain %q", d)
		}
	}
	for k, v := range o.ExtraMain {
		if k == "" || strings.ContainsAny(k, " \t\r\n=") || strings.ContainsAny(v, "\r\n") {
			return fmt.Errorf("ExtraMain: invalid setting %q = %q", k, v)
		}
	}
	if _, err := parseMainCF(o.MainCF); err != nil {
		return fmt.Errorf("MainCF: %w", err)
	}
	if len(o.ListDomains) > 0 && o.TransportMaps == "" && o.LMTP == "" {
		return fmt.Errorf("ListDomains %v need LMTP (or TransportMaps) to say where list mail goes", o.ListDomains)
	}
	switch o.MilterDefaultAction {
	case "", "accept", "reject", "tempfail", "quarantine":
	default:
		return fmt.Errorf("MilterDefaultAction %q is not one of accept, reject, tempfail, quarantine", o.MilterDefaultAction)
	}
	return nil
}
