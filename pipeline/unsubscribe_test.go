package pipeline

import (
	"bytes"
	"context"
	"io"
	"mime/multipart"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"postlist/store"
)

func TestUnsubscribeToken(t *testing.T) {
	p := &Pipeline{secret: []byte("k1"), baseURL: "https://x.example"}
	tok := p.UnsubscribeToken(1, "alice@example.com")
	if len(tok) != 26 || strings.ToLower(tok) != tok {
		t.Fatalf("token %q", tok)
	}
	same := []struct {
		list int64
		addr string
	}{{1, "alice@example.com"}, {1, "Alice@Example.COM"}}
	for _, s := range same {
		if got := p.UnsubscribeToken(s.list, s.addr); got != tok {
			t.Errorf("token(%d, %s) = %s, want %s", s.list, s.addr, got, tok)
		}
	}
	differ := []struct {
		p    *Pipeline
		list int64
		addr string
	}{
		{p, 2, "alice@example.com"},
		{p, 1, "bob@example.com"},
		{p, 11, "alice@example.com"},
		{&Pipeline{secret: []byte("k2")}, 1, "alice@example.com"},
	}
	for _, d := range differ {
		if got := d.p.UnsubscribeToken(d.list, d.addr); got == tok {
			t.Errorf("token(%d, %s) with secret %q equals the first", d.list, d.addr, d.p.secret)
		}
	}
	if got := (&Pipeline{}).UnsubscribeToken(1, "alice@example.com"); got != "" {
		t.Errorf("token without a secret: %q", got)
	}
	if !p.validToken(1, "alice@example.com", strings.ToUpper(tok)) {
		t.Error("an upper-cased token is refused")
	}
	flipped := tok[:25] + "a"
	if tok[25] == 'a' {
		flipped = tok[:25] + "b"
	}
	if p.validToken(1, "alice@example.com", flipped) {
		t.Error("an altered token is accepted")
	}
	u := p.UnsubscribeURL(7, "a+b@example.com")
	if u != "https://x.example/unsubscribe?a=a%2Bb%40example.com&l=7&t="+p.UnsubscribeToken(7, "a+b@example.com") {
		t.Errorf("URL %q", u)
	}
	for _, q := range []*Pipeline{{secret: []byte("k")}, {baseURL: "https://x"}} {
		if q.UnsubscribeURL(1, "a@b.example") != "" {
			t.Error("URL without base URL or secret")
		}
	}
}

type unsubCase struct {
	name        string
	method      string
	target      string
	body        string
	contentType string
	status      int
	contains    string
	member      bool // bob still a member afterwards
}

func TestUnsubscribeHandler(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	h := e.p.UnsubscribeHandler()
	good := e.p.UnsubscribeURL(e.list.ID, "bob@example.net")
	path := strings.TrimPrefix(good, baseURL)
	u, _ := url.Parse(path)
	q := u.Query()
	withQ := func(k, v string) string {
		qq := url.Values{}
		for key, vs := range q {
			qq[key] = vs
		}
		qq.Set(k, v)
		return "/unsubscribe?" + qq.Encode()
	}
	mp := func() (string, string) {
		var b bytes.Buffer
		w := multipart.NewWriter(&b)
		w.WriteField("List-Unsubscribe", "One-Click")
		w.Close()
		return b.String(), w.FormDataContentType()
	}
	mpBody, mpType := mp()
	form := "application/x-www-form-urlencoded"

	cases := []unsubCase{
		{name: "GET shows a confirmation", method: "GET", target: path, status: 200, contains: `<form method="post" action="">`, member: true},
		{name: "HEAD", method: "HEAD", target: path, status: 200, member: true},
		{name: "missing token", method: "GET", target: "/unsubscribe?l=1&a=bob%40example.net", status: 400, contains: "incomplete", member: true},
		{name: "bad list", method: "GET", target: withQ("l", "x"), status: 400, member: true},
		{name: "bad address", method: "GET", target: withQ("a", "not an address"), status: 400, member: true},
		{name: "forged token", method: "POST", target: withQ("t", strings.Repeat("a", 26)), body: "List-Unsubscribe=One-Click", contentType: form, status: 404, contains: "not valid", member: true},
		{name: "token of another member", method: "POST", target: withQ("a", "alice@example.com"), body: "List-Unsubscribe=One-Click", contentType: form, status: 404, member: true},
		{name: "token for another list", method: "GET", target: withQ("l", "999"), status: 404, member: true},
		{name: "POST without the RFC 8058 body", method: "POST", target: path, body: "foo=bar", contentType: form, status: 400, contains: "One-Click", member: true},
		{name: "PUT", method: "PUT", target: path, status: 405, member: true},
		{name: "one-click POST", method: "POST", target: path, body: "List-Unsubscribe=One-Click", contentType: form, status: 200, contains: "has been unsubscribed"},
		{name: "repeated POST", method: "POST", target: path, body: "List-Unsubscribe=One-Click", contentType: form, status: 200, contains: "is not subscribed"},
		{name: "GET after", method: "GET", target: path, status: 200, contains: "is not subscribed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			r := httptest.NewRequest(tc.method, tc.target, body)
			if tc.contentType != "" {
				r.Header.Set("Content-Type", tc.contentType)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.status {
				t.Errorf("status %d, want %d:\n%s", w.Code, tc.status, w.Body)
			}
			if !strings.Contains(w.Body.String(), tc.contains) {
				t.Errorf("page lacks %q:\n%s", tc.contains, w.Body)
			}
			if w.Header().Get("Referrer-Policy") != "no-referrer" || w.Header().Get("Cache-Control") != "no-store" {
				t.Errorf("headers %v", w.Header())
			}
			member, err := e.st.IsMember(ctx, e.list.ID, "bob@example.net")
			if err != nil {
				t.Fatal(err)
			}
			if member != tc.member {
				t.Errorf("member afterwards = %v, want %v", member, tc.member)
			}
		})
	}

	// multipart/form-data is the other encoding RFC 8058 allows.
	carol := strings.TrimPrefix(e.p.UnsubscribeURL(e.list.ID, "carol@example.org"), baseURL)
	r := httptest.NewRequest("POST", carol, strings.NewReader(mpBody))
	r.Header.Set("Content-Type", mpType)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 200 {
		t.Errorf("multipart POST: %d %s", w.Code, w.Body)
	}
	if ok, _ := e.st.IsMember(ctx, e.list.ID, "carol@example.org"); ok {
		t.Error("carol still subscribed after a multipart one-click POST")
	}
	var n int
	for _, l := range e.logs.FilterMessage("member unsubscribed").All() {
		if l.ContextMap()["list"] == testList {
			n++
		}
		for k, v := range l.ContextMap() {
			if s, ok := v.(string); ok && strings.Contains(s, e.p.UnsubscribeToken(e.list.ID, "bob@example.net")) {
				t.Errorf("token logged in %s", k)
			}
		}
	}
	if n != 2 {
		t.Errorf("%d unsubscribe log lines, want 2", n)
	}
}

// TestUnsubscribeRecordsEvent: the removal is an event like an admin's,
// which the milter's index also reads (recently removed members may
// still bounce).
func TestUnsubscribeRecordsEvent(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	path := strings.TrimPrefix(e.p.UnsubscribeURL(e.list.ID, "alice@example.com"), baseURL)
	r := httptest.NewRequest("POST", path, strings.NewReader("List-Unsubscribe=One-Click"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	e.p.UnsubscribeHandler().ServeHTTP(w, r)
	if w.Code != 200 {
		t.Fatalf("status %d", w.Code)
	}
	found := false
	_, err := e.st.ScanIndex(ctx, e.st.Now().Add(-3600e9), store.IndexVisitor{Removed: func(m store.IndexRemoved) error {
		found = found || m.Address == "alice@example.com" && m.ListID == e.list.ID
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Error("no member_removed event for the one-click unsubscribe")
	}
	// The list's owners keep their rows.
	ms, _ := e.st.Members(ctx, testList, "owner")
	if len(ms) != 1 {
		t.Errorf("owners %v", ms)
	}
}
