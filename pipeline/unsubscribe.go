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
	"html/template"
	"net/http"
	"net/url"
	"strconv"
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
// where LIST-ID is the list's RFC 2919 List-Id and TOKEN the day the copy
// was rendered followed by an HMAC, under a per-site secret, of the
// List-Id, the member row id of the subscription, the lower-cased address
// and that day. Nothing is stored per message: the handler finds the
// subscription, recomputes the token and compares it in constant time.
// Member and list ids are never reused (store migration 0120), so a link
// dies with its subscription: unsubscribing and subscribing again, or
// removing the list and creating one of the same name, invalidates every
// link sent before. A link also expires unsubscribe_link_life after the
// day it was made; a guessed or altered link does nothing.
//
// A POST with the body List-Unsubscribe=One-Click (what mail providers
// send, RFC 8058 section 3.2) unsubscribes at once. A GET - a person
// clicking, or a link scanner fetching - only shows a page with a button
// that makes that same POST: no state changes on GET.
//
// The answers never tell a link holder more than the link proves: an
// expired link is recognised from its (unchecked) day alone, before
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
	// A token starts with the day it was made (days since 1970-01-01
	// UTC) in 4 characters, good until the year 4840.
	tokenDayLen = 4
	tokenLen    = tokenDayLen + tokenMACLen
	day         = 24 * time.Hour
)

// DefaultUnsubscribeLinkLife is Options.UnsubscribeLinkLife when none is
// set ([http] unsubscribe_link_life).
const DefaultUnsubscribeLinkLife = 365 * day

func dayNumber(t time.Time) int64 {
	u := t.Unix()
	d := u / int64(day/time.Second)
	if u < 0 && u%int64(day/time.Second) != 0 {
		d--
	}
	return d
}

func formatDay(d int64) string {
	var b [tokenDayLen]byte
	for i := tokenDayLen - 1; i >= 0; i-- {
		b[i] = tokenDigits[d&31]
		d >>= 5
	}
	return string(b[:])
}

// parseDay returns the start of the day a token names.
func parseDay(s string) (time.Time, bool) {
	var d int64
	for i := 0; i < len(s); i++ {
		c := strings.IndexByte(tokenDigits, s[i])
		if c < 0 {
			return time.Time{}, false
		}
		d = d<<5 | int64(c)
	}
	return time.Unix(d*int64(day/time.Second), 0).UTC(), true
}

// UnsubscribeToken returns the token of subscription memberID (a member
// row id, store.SubscriptionID) of member to the list whose List-Id is
// listID, made at now: its day and 128 bits of HMAC-SHA256. "" without a
// secret.
func (p *Pipeline) UnsubscribeToken(listID string, memberID int64, member string, now time.Time) string {
	if len(p.secret) == 0 {
		return ""
	}
	d := formatDay(dayNumber(now))
	return d + p.tokenMAC(listID, memberID, member, d)
}

func (p *Pipeline) tokenMAC(listID string, memberID int64, member, day string) string {
	h := hmac.New(sha256.New, p.secret)
	h.Write([]byte("postlist-unsubscribe-v2\x00"))
	h.Write([]byte(strings.ToLower(listID)))
	h.Write([]byte{0})
	h.Write([]byte(strconv.FormatInt(memberID, 10)))
	h.Write([]byte{0})
	h.Write([]byte(strings.ToLower(member)))
	h.Write([]byte{0})
	h.Write([]byte(day))
	return tokenEncoding.EncodeToString(h.Sum(nil)[:tokenBytes])
}

// tokenState is what the day of a token says, before anything is looked
// up.
type tokenState int

const (
	tokenCurrent tokenState = iota
	tokenExpired
	tokenMalformed
)

// tokenAge judges token's day at now: made more than the link life ago
// (counted from the end of that day), or not a day at all, or more than a
// day ahead (no clock steps back that far).
func (p *Pipeline) tokenAge(token string, now time.Time) tokenState {
	made, ok := parseDay(token[:tokenDayLen])
	if !ok || made.After(now.Add(day)) {
		return tokenMalformed
	}
	if now.Sub(made.Add(day)) > p.linkLife {
		return tokenExpired
	}
	return tokenCurrent
}

// validToken reports whether token was made for subscription memberID of
// member to listID, in constant time.
func (p *Pipeline) validToken(listID string, memberID int64, member, token string) bool {
	if len(p.secret) == 0 || len(token) != tokenLen {
		return false
	}
	token = strings.ToLower(token)
	want := p.tokenMAC(listID, memberID, member, token[:tokenDayLen])
	return hmac.Equal([]byte(token[tokenDayLen:]), []byte(want))
}

// UnsubscribeURL returns member's one-click URL for subscription memberID
// to the list whose List-Id is listID, made at now, or "" when there is no
// base URL or no secret.
func (p *Pipeline) UnsubscribeURL(listID string, memberID int64, member string, now time.Time) string {
	if p.baseURL == "" || len(p.secret) == 0 {
		return ""
	}
	q := url.Values{}
	q.Set("l", listID)
	q.Set("a", member)
	q.Set("t", p.UnsubscribeToken(listID, memberID, member, now))
	return p.baseURL + UnsubscribePath + "?" + q.Encode()
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
	if len(token) == tokenMACLen {
		// A link from before tokens had a day (l was a row id): never
		// honoured, since that id may name another list by now.
		p.expired(w, r, listID)
		return
	}
	if listID == "" || len(listID) > 255 || aerr != nil || len(token) != tokenLen {
		p.page(w, r, http.StatusBadRequest, unsubPage{Title: "Incomplete link",
			Message: "This unsubscribe link is incomplete or damaged. Copy the whole link from the message, or unsubscribe by mail with the address in the List-Unsubscribe header."})
		return
	}
	switch p.tokenAge(token, p.st.Now()) {
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
	memberID, err := p.st.SubscriptionID(ctx, l.ID, addr)
	if err != nil {
		p.serverError(w, r, err)
		return
	}
	if memberID == 0 || !p.validToken(l.ListID, memberID, addr, token) {
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
