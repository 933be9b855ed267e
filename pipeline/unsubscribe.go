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
//	List-Unsubscribe: <BASE/unsubscribe?l=LIST&a=ADDRESS&t=TOKEN>, <mailto:NAME-leave@DOMAIN>
//	List-Unsubscribe-Post: List-Unsubscribe=One-Click
//
// where TOKEN is an HMAC of the list's row id and the member's address
// under a per-site secret. Nothing is stored per message or per member:
// the handler recomputes the token and compares it in constant time, so a
// link keeps working for as long as the secret does, and a guessed or
// altered link does nothing.
//
// A POST with the body List-Unsubscribe=One-Click (what mail providers
// send, RFC 8058 section 3.2) unsubscribes at once. A GET - a person
// clicking, or a link scanner fetching - only shows a page with a button
// that makes that same POST: no state changes on GET.

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
var tokenEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

const tokenBytes = 16

// UnsubscribeToken returns member's token for list listID: 128 bits of
// HMAC-SHA256 over the list id and the lower-cased address. "" without a
// secret.
func (p *Pipeline) UnsubscribeToken(listID int64, member string) string {
	if len(p.secret) == 0 {
		return ""
	}
	h := hmac.New(sha256.New, p.secret)
	h.Write([]byte("postlist-unsubscribe-v1\x00"))
	h.Write([]byte(strconv.FormatInt(listID, 10)))
	h.Write([]byte{0})
	h.Write([]byte(strings.ToLower(member)))
	return tokenEncoding.EncodeToString(h.Sum(nil)[:tokenBytes])
}

func (p *Pipeline) validToken(listID int64, member, token string) bool {
	want := p.UnsubscribeToken(listID, member)
	return want != "" && hmac.Equal([]byte(strings.ToLower(token)), []byte(want))
}

// UnsubscribeURL returns member's one-click URL for list listID, or ""
// when there is no base URL or no secret.
func (p *Pipeline) UnsubscribeURL(listID int64, member string) string {
	if p.baseURL == "" || len(p.secret) == 0 {
		return ""
	}
	q := url.Values{}
	q.Set("l", strconv.FormatInt(listID, 10))
	q.Set("a", member)
	q.Set("t", p.UnsubscribeToken(listID, member))
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
	listID, err := strconv.ParseInt(q.Get("l"), 10, 64)
	addr, aerr := address.Normalize(q.Get("a"))
	token := q.Get("t")
	if err != nil || listID <= 0 || aerr != nil || len(token) != tokenEncoding.EncodedLen(tokenBytes) {
		p.page(w, r, http.StatusBadRequest, unsubPage{Title: "Incomplete link",
			Message: "This unsubscribe link is incomplete or damaged. Copy the whole link from the message, or unsubscribe by mail with the address in the List-Unsubscribe header."})
		return
	}
	if !p.validToken(listID, addr, token) {
		p.page(w, r, http.StatusNotFound, unsubPage{Title: "Unknown link",
			Message: "This unsubscribe link is not valid. Unsubscribe by mail with the address in the message's List-Unsubscribe header instead."})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	l, err := p.st.ListByID(ctx, listID)
	if errors.Is(err, store.ErrNotFound) {
		p.page(w, r, http.StatusNotFound, unsubPage{Title: "No such list", Message: "This mailing list no longer exists, so there is nothing to unsubscribe from."})
		return
	}
	if err != nil {
		p.serverError(w, r, err)
		return
	}
	name := l.Setting("display_name")
	if name == "" {
		name = l.Address
	}
	log := p.log.With(zap.String("list", l.Address), zap.String("address", addr))

	if r.Method != http.MethodPost {
		member, err := p.st.IsMember(ctx, listID, addr)
		if err != nil {
			p.serverError(w, r, err)
			return
		}
		if !member {
			p.page(w, r, http.StatusOK, unsubPage{Title: "Not subscribed",
				Message: addr + " is not subscribed to the " + name + " mailing list (" + l.Address + ")."})
			return
		}
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
	removed, err := p.st.Unsubscribe(ctx, listID, addr, "one-click unsubscribe (RFC 8058)")
	if err != nil {
		p.serverError(w, r, err)
		return
	}
	if !removed {
		log.Info("one-click unsubscribe for an address that is not subscribed")
		p.page(w, r, http.StatusOK, unsubPage{Title: "Not subscribed",
			Message: addr + " is not subscribed to the " + name + " mailing list (" + l.Address + ")."})
		return
	}
	log.Info("member unsubscribed", zap.String("action", "one-click unsubscribe"))
	p.page(w, r, http.StatusOK, unsubPage{Title: "Unsubscribed",
		Message: addr + " has been unsubscribed from the " + name + " mailing list (" + l.Address + ")."})
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
