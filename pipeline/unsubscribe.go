package pipeline

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"postlist/address"
	"postlist/store"
)

// One-click unsubscribe (RFC 8058).
//
// Every member's copy of a post on a personalized list carries
//
//	List-Unsubscribe: <BASE/unsubscribe?l=LIST-ID&a=ADDRESS&t=TOKEN>, <mailto:NAME-leave@DOMAIN>
//	List-Unsubscribe-Post: List-Unsubscribe=One-Click
//
// where LIST-ID is the list's RFC 2919 List-Id and TOKEN the second the
// copy was rendered followed by an HMAC, under a per-site secret, of the
// List-Id, the lower-cased address and that second. Nothing is stored per
// message and nothing is looked up per copy: the handler recomputes the
// HMAC, compares it in constant time, and finds the subscription, which
// must be no newer than the link. So a link dies with its subscription:
// unsubscribing and subscribing again, or removing the list and creating
// one of the same name, makes a subscription newer than every link sent
// before, and those links no longer work. A link also expires
// unsubscribe_link_life after it was made; a guessed or altered link does
// nothing.
//
// A POST with the body List-Unsubscribe=One-Click (what mail providers
// send, RFC 8058 section 3.2) unsubscribes at once. A GET - a person
// clicking, or a link scanner fetching - only shows a page with a button
// that makes that same POST: no state changes on GET.
//
// The answers never tell a link holder more than the link proves: an
// expired link is recognised from its (unchecked) stamp alone, before
// anything is looked up, and a wrong token, an unknown list and an
// address that is not subscribed all get the same page.

// UnsubscribePath is where the daemon mounts UnsubscribeHandler on the
// [http] listener; links are BaseURL + UnsubscribePath + "?...".
const UnsubscribePath = "/unsubscribe"

// SecretKey is the site table key of the unsubscribe secret.
const SecretKey = "unsubscribe_secret"

// Secret returns the site's unsubscribe secret, creating it on first use,
// for Options.Secret.
func Secret(ctx context.Context, st *store.Store) ([]byte, error) {
	v, err := st.SiteValue(ctx, SecretKey, func() (string, error) {
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		return hex.EncodeToString(b[:]), nil
	})
	if err != nil {
		return nil, fmt.Errorf("unsubscribe secret: %w", err)
	}
	return []byte(v), nil
}

// tokenEncoding is lower-case so the token survives MUAs and proxies that
// lower-case URLs; 16 bytes give 26 characters.
var tokenEncoding = base32.NewEncoding(tokenDigits).WithPadding(base32.NoPadding)

const (
	tokenDigits = "abcdefghijklmnopqrstuvwxyz234567"
	tokenBytes  = 16
	tokenMACLen = 26 // tokenEncoding.EncodedLen(tokenBytes)
	// A token starts with the second it was made (Unix time) in 7
	// characters, 35 bits: good until the year 3058.
	tokenStampLen = 7
	tokenLen      = tokenStampLen + tokenMACLen
	// Earlier formats, never honoured: the bare MAC (the link named the
	// list by row id) and a 4-character day stamp (the MAC bound the
	// member row id).
	tokenLenNoStamp = tokenMACLen
	tokenLenDay     = 4 + tokenMACLen
	day             = 24 * time.Hour
)

// DefaultUnsubscribeLinkLife is Options.UnsubscribeLinkLife when none is
// set ([http] unsubscribe_link_life).
const DefaultUnsubscribeLinkLife = 365 * day

func formatStamp(t time.Time) string {
	u := t.Unix()
	if u < 0 {
		u = 0 // no link is made before 1970; keep the digits in range
	}
	var b [tokenStampLen]byte
	for i := tokenStampLen - 1; i >= 0; i-- {
		b[i] = tokenDigits[u&31]
		u >>= 5
	}
	return string(b[:])
}

// parseStamp returns the second a token's stamp names.
func parseStamp(s string) (time.Time, bool) {
	if len(s) != tokenStampLen {
		return time.Time{}, false
	}
	var u int64
	for i := 0; i < len(s); i++ {
		c := strings.IndexByte(tokenDigits, s[i])
		if c < 0 {
			return time.Time{}, false
		}
		u = u<<5 | int64(c)
	}
	return time.Unix(u, 0).UTC(), true
}

// UnsubscribeToken returns the token of member's subscription to the list
// whose List-Id is listID, made at now: its second and 128 bits of
// HMAC-SHA256. "" without a secret. It needs nothing from the store, so
// rendering a member's copy costs no lookup; the subscription is bound at
// click time by its creation time (see serveUnsubscribe).
func (p *Pipeline) UnsubscribeToken(listID, member string, now time.Time) string {
	if len(p.secret) == 0 {
		return ""
	}
	var b [tokenLen]byte
	stamp := formatStamp(now)
	copy(b[:], stamp)
	p.tokenMAC(b[tokenStampLen:], listID, member, stamp)
	return string(b[:])
}

// tokenMAC writes the MAC part of a token into dst (tokenMACLen bytes).
// It runs for every member's copy, so the keyed hash is reused: keying
// one costs as much as hashing the message.
func (p *Pipeline) tokenMAC(dst []byte, listID, member, stamp string) {
	h, _ := p.macs.Get().(hash.Hash)
	if h == nil {
		h = hmac.New(sha256.New, p.secret)
	}
	h.Reset()
	io.WriteString(h, "postlist-unsubscribe-v3\x00")
	io.WriteString(h, strings.ToLower(listID))
	h.Write([]byte{0})
	io.WriteString(h, strings.ToLower(member))
	h.Write([]byte{0})
	io.WriteString(h, stamp)
	var sum [sha256.Size]byte
	tokenEncoding.Encode(dst, h.Sum(sum[:0])[:tokenBytes])
	p.macs.Put(h)
}

// tokenState is what the stamp of a token says, before anything is
// looked up.
type tokenState int

const (
	tokenCurrent tokenState = iota
	tokenExpired
	tokenMalformed
)

// tokenAge judges token's stamp at now: made more than the link life ago,
// or not a stamp at all, or more than a day ahead (no clock steps back
// that far). It also returns the time the stamp names.
func (p *Pipeline) tokenAge(token string, now time.Time) (time.Time, tokenState) {
	made, ok := parseStamp(token[:tokenStampLen])
	if !ok || made.After(now.Add(day)) {
		return time.Time{}, tokenMalformed
	}
	if now.Sub(made) > p.linkLife {
		return made, tokenExpired
	}
	return made, tokenCurrent
}

// validToken reports whether token's MAC is the one made for member of
// listID at the token's stamp, in constant time. Whether the stamp is
// recent, and not older than the subscription, is the caller's to check.
func (p *Pipeline) validToken(listID, member, token string) bool {
	if len(p.secret) == 0 || len(token) != tokenLen {
		return false
	}
	token = strings.ToLower(token)
	var want [tokenMACLen]byte
	p.tokenMAC(want[:], listID, member, token[:tokenStampLen])
	return hmac.Equal([]byte(token[tokenStampLen:]), want[:])
}

// madeForSubscription reports whether a link stamped made can have been
// sent to a subscription created at created. Stamps count whole seconds,
// so created is too: a link rendered in the second its subscription was
// created still works, and a subscription made in a later second than
// the link - the address left and joined again, or the list was removed
// and created again under the same name - is not one the link was sent
// to.
func madeForSubscription(made, created time.Time) bool {
	return !created.Truncate(time.Second).After(made)
}

// UnsubscribeURL returns member's one-click URL for the list whose
// List-Id is listID, made at now, or "" when there is no base URL or no
// secret.
func (p *Pipeline) UnsubscribeURL(listID, member string, now time.Time) string {
	if p.baseURL == "" || len(p.secret) == 0 {
		return ""
	}
	// Written out rather than through url.Values, which costs a map and
	// a sort per copy; the same order and escaping (a, l, t).
	tok := p.UnsubscribeToken(listID, member, now)
	a, l := url.QueryEscape(member), url.QueryEscape(listID)
	var b strings.Builder
	b.Grow(len(p.baseURL) + len(UnsubscribePath) + len(a) + len(l) + len(tok) + 10)
	b.WriteString(p.baseURL)
	b.WriteString(UnsubscribePath)
	b.WriteString("?a=")
	b.WriteString(a)
	b.WriteString("&l=")
	b.WriteString(l)
	b.WriteString("&t=")
	b.WriteString(tok)
	return b.String()
}

// maxUnsubscribeBody bounds what a POST may send; the real body is 26
// bytes.
const maxUnsubscribeBody = 16 << 10

// UnsubscribeHandler serves one-click unsubscribe links. It answers on
// whatever path it is mounted; see UnsubscribePath.
func (p *Pipeline) UnsubscribeHandler() http.Handler {
	return http.HandlerFunc(p.serveUnsubscribe)
}

type unsubPage struct {
	Title   string
	Message string
	List    string
	Address string
	Confirm bool // show the button
}

var unsubTemplate = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{.Title}}</title>
<style>body{font-family:sans-serif;max-width:36em;margin:3em auto;padding:0 1em;line-height:1.5}button{font-size:1em;padding:.4em 1em}</style>
</head>
<body>
<h1>{{.Title}}</h1>
<p>{{.Message}}</p>
{{if .Confirm}}<form method="post" action="">
<input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe {{.Address}}</button>
</form>{{end}}
</body>
</html>
`))

func (p *Pipeline) serveUnsubscribe(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// The URL carries the token: keep it out of caches and referrers.
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'")

	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost:
	default:
		h.Set("Allow", "GET, HEAD, POST")
		p.page(w, r, http.StatusMethodNotAllowed, unsubPage{Title: "Not allowed", Message: "Use the link from the message, or the button on its page."})
		return
	}
	q := r.URL.Query()
	listID := q.Get("l")
	addr, aerr := address.Normalize(q.Get("a"))
	token := strings.ToLower(q.Get("t"))
	if len(token) == tokenLenNoStamp || len(token) == tokenLenDay {
		// A link in an earlier format: never honoured. The oldest named
		// the list by a row id that may be another list's by now; both
		// are older than the links that replaced them, so "expired" is
		// the truth.
		p.expired(w, r, listID)
		return
	}
	if listID == "" || len(listID) > 255 || aerr != nil || len(token) != tokenLen {
		p.page(w, r, http.StatusBadRequest, unsubPage{Title: "Incomplete link",
			Message: "This unsubscribe link is incomplete or damaged. Copy the whole link from the message, or unsubscribe by mail with the address in the List-Unsubscribe header."})
		return
	}
	made, state := p.tokenAge(token, p.st.Now())
	switch state {
	case tokenExpired:
		p.expired(w, r, listID)
		return
	case tokenMalformed:
		p.unknownLink(w, r, listID)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	l, err := p.st.ListByListID(ctx, listID)
	if errors.Is(err, store.ErrNotFound) {
		p.unknownLink(w, r, listID)
		return
	}
	if err != nil {
		p.serverError(w, r, err)
		return
	}
	memberID, created, err := p.st.Subscription(ctx, l.ID, addr)
	if err != nil {
		p.serverError(w, r, err)
		return
	}
	// The MAC proves who the link was made for and when; the creation
	// time ties it to this subscription: every subscription newer than
	// the link is one it was not sent to.
	if memberID == 0 || !p.validToken(l.ListID, addr, token) || !madeForSubscription(made, created) {
		p.unknownLink(w, r, listID)
		return
	}
	name := l.Setting("display_name")
	if name == "" {
		name = l.Address
	}
	log := p.log.With(zap.String("list", l.Address), zap.String("address", addr))

	if r.Method != http.MethodPost {
		p.page(w, r, http.StatusOK, unsubPage{Title: "Unsubscribe from " + name,
			Message: "Press the button to stop " + addr + " from receiving the " + name + " mailing list (" + l.Address + ").",
			List:    l.Address, Address: addr, Confirm: true})
		return
	}

	r.Body = http.MaxBytesReader(w, r.Body, maxUnsubscribeBody)
	var perr error
	if strings.HasPrefix(strings.ToLower(r.Header.Get("Content-Type")), "multipart/form-data") {
		perr = r.ParseMultipartForm(maxUnsubscribeBody)
	} else {
		perr = r.ParseForm()
	}
	if perr != nil || r.PostForm.Get("List-Unsubscribe") != "One-Click" {
		p.page(w, r, http.StatusBadRequest, unsubPage{Title: "Unexpected request",
			Message: "An unsubscribe request must carry List-Unsubscribe=One-Click (RFC 8058). Use the button on the link's page."})
		return
	}
	removed, err := p.st.UnsubscribeSubscription(ctx, l.ID, memberID, addr, "one-click unsubscribe (RFC 8058)")
	if err != nil {
		p.serverError(w, r, err)
		return
	}
	if !removed {
		// Unsubscribed by a request racing this one.
		log.Info("one-click unsubscribe for an address that is not subscribed")
		p.page(w, r, http.StatusOK, unsubPage{Title: "Not subscribed",
			Message: addr + " is not subscribed to the " + name + " mailing list (" + l.Address + ")."})
		return
	}
	log.Info("member unsubscribed", zap.String("action", "one-click unsubscribe"))
	p.page(w, r, http.StatusOK, unsubPage{Title: "Unsubscribed",
		Message: addr + " has been unsubscribed from the " + name + " mailing list (" + l.Address + ")."})
}

// expired answers a link older than the link life. It is decided from
// the link alone, so it says nothing about the list or the address.
func (p *Pipeline) expired(w http.ResponseWriter, r *http.Request, listID string) {
	p.log.Info("one-click unsubscribe link expired", zap.String("list_id", clipLogField(listID)))
	p.page(w, r, http.StatusGone, unsubPage{Title: "Expired link",
		Message: "This unsubscribe link has expired. Unsubscribe with the link in a recent message from the list, or by mail with the address in the message's List-Unsubscribe header."})
}

// unknownLink answers a link that does not check: a wrong token, a list
// that does not exist (any more), an address that is not subscribed (any
// more). One answer for all, so that a link proves nothing about who is
// subscribed where.
func (p *Pipeline) unknownLink(w http.ResponseWriter, r *http.Request, listID string) {
	p.log.Info("one-click unsubscribe link not valid", zap.String("list_id", clipLogField(listID)))
	p.page(w, r, http.StatusNotFound, unsubPage{Title: "Unknown link",
		Message: "This unsubscribe link is not valid, or the address it names is no longer subscribed. Unsubscribe by mail with the address in the message's List-Unsubscribe header instead."})
}

// clipLogField keeps a value from a URL short in the log.
func clipLogField(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}

func (p *Pipeline) serverError(w http.ResponseWriter, r *http.Request, err error) {
	p.log.Error("unsubscribe request failed", zap.Error(err))
	p.page(w, r, http.StatusServiceUnavailable, unsubPage{Title: "Try again later",
		Message: "The request could not be handled just now. Please try again in a few minutes."})
}

func (p *Pipeline) page(w http.ResponseWriter, r *http.Request, status int, pg unsubPage) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	if err := unsubTemplate.Execute(w, pg); err != nil {
		p.log.Warn("writing unsubscribe page", zap.Error(err))
	}
}
