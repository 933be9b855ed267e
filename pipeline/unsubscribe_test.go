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
	"time"

	"postlist/store"
)

// link returns addr's one-click URL on list as Render makes it now.
func (e *env) link(list *store.List, addr string) string {
	e.t.Helper()
	u := e.p.UnsubscribeURL(list.ListID, addr, e.st.Now())
	if u == "" {
		e.t.Fatal("no unsubscribe URL")
	}
	return strings.TrimPrefix(u, baseURL)
}

func TestUnsubscribeToken(t *testing.T) {
	p := &Pipeline{secret: []byte("k1"), baseURL: "https://x.example"}
	const list = "test.lists.example.org"
	now := time.Date(2026, 12, 8, 3, 0, 0, 0, time.UTC)
	tok := p.UnsubscribeToken(list, "alice@example.com", now)
	if len(tok) != tokenLen || tokenLen != 33 || strings.ToLower(tok) != tok || strings.Trim(tok, tokenDigits) != "" {
		t.Fatalf("token %q, want 33 lower-case base32 characters", tok)
	}
	same := []struct {
		list string
		addr string
		at   time.Time
	}{
		{list, "alice@example.com", now},
		{"Test.Lists.Example.ORG", "Alice@Example.COM", now},
		{list, "alice@example.com", now.Add(999 * time.Millisecond)}, // same second
	}
	for _, s := range same {
		if got := p.UnsubscribeToken(s.list, s.addr, s.at); got != tok {
			t.Errorf("token(%s, %s, %s) = %s, want %s", s.list, s.addr, s.at, got, tok)
		}
	}
	differ := []struct {
		p    *Pipeline
		list string
		addr string
		at   time.Time
	}{
		{p, "other.lists.example.org", "alice@example.com", now},
		{p, list, "bob@example.com", now},
		{p, list, "alice@example.com", now.Add(time.Second)},
		{&Pipeline{secret: []byte("k2")}, list, "alice@example.com", now},
	}
	for _, d := range differ {
		if got := d.p.UnsubscribeToken(d.list, d.addr, d.at); got == tok {
			t.Errorf("token(%s, %s, %s) with secret %q equals the first", d.list, d.addr, d.at, d.p.secret)
		}
	}
	if got := (&Pipeline{}).UnsubscribeToken(list, "alice@example.com", now); got != "" {
		t.Errorf("token without a secret: %q", got)
	}
	if !p.validToken(list, "alice@example.com", strings.ToUpper(tok)) {
		t.Error("an upper-cased token is refused")
	}
	for i, c := range []byte{tok[len(tok)-1], tok[tokenStampLen-1]} {
		altered := []byte(tok)
		pos := len(tok) - 1
		if i == 1 {
			pos = tokenStampLen - 1 // the stamp: a link made to look newer
		}
		altered[pos] = map[bool]byte{true: 'b', false: 'a'}[c == 'a']
		if p.validToken(list, "alice@example.com", string(altered)) {
			t.Errorf("an altered token %s is accepted", altered)
		}
	}
	u := p.UnsubscribeURL(list, "a+b@example.com", now)
	if u != "https://x.example/unsubscribe?a=a%2Bb%40example.com&l=test.lists.example.org&t="+p.UnsubscribeToken(list, "a+b@example.com", now) {
		t.Errorf("URL %q", u)
	}
	// The URL is written out by hand: whatever the address holds, it
	// must read back as the same three values.
	for _, addr := range []string{"o'brien+x@example.com", "a&b=c;d@example.com", "\"sp ace\"%#@example.com"} {
		pu, err := url.Parse(p.UnsubscribeURL(list, addr, now))
		if err != nil {
			t.Fatalf("URL for %s: %v", addr, err)
		}
		got := pu.Query()
		if len(got) != 3 || got.Get("a") != addr || got.Get("l") != list || got.Get("t") != p.UnsubscribeToken(list, addr, now) {
			t.Errorf("URL for %s reads back as %v", addr, got)
		}
	}
	for _, q := range []*Pipeline{{secret: []byte("k")}, {baseURL: "https://x"}} {
		if q.UnsubscribeURL(list, "a@b.example", now) != "" {
			t.Error("URL without base URL or secret")
		}
	}
}

// TestTokenStamp: the stamp is the issue second, read back exactly, and
// its width lasts far beyond 2100.
func TestTokenStamp(t *testing.T) {
	for _, at := range []time.Time{
		time.Unix(0, 0),
		time.Date(2026, 12, 8, 3, 4, 5, 0, time.UTC),
		time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(3000, 12, 31, 23, 59, 59, 0, time.UTC),
	} {
		s := formatStamp(at)
		got, ok := parseStamp(s)
		if !ok || !got.Equal(at) || len(s) != tokenStampLen {
			t.Errorf("stamp of %s: %q read back as %s, %v", at, s, got, ok)
		}
	}
	for _, bad := range []string{"aaaaaa1", "aaaaaa", "aaaaaaaa", "AAAAAAA"} {
		if _, ok := parseStamp(bad); ok {
			t.Errorf("stamp %q accepted", bad)
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
	// bob is on a second list too: his token for one must not work for
	// the other.
	if _, err := e.st.CreateList(ctx, "open@lists.example.org"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.AddMembers(ctx, "open@lists.example.org", "member", []store.NewMember{{Address: "bob@example.net"}}, nil); err != nil {
		t.Fatal(err)
	}
	path := e.link(e.list, "bob@example.net")
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
	upperQ := func(keys ...string) string {
		qq := url.Values{}
		for key, vs := range q {
			qq[key] = vs
		}
		for _, k := range keys {
			qq.Set(k, strings.ToUpper(q.Get(k)))
		}
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
		{name: "List-Id and token case-folded on the way", method: "GET", target: upperQ("l", "t", "a"), status: 200, contains: `<form method="post" action="">`, member: true},
		{name: "missing token", method: "GET", target: "/unsubscribe?l=test.lists.example.org&a=bob%40example.net", status: 400, contains: "incomplete", member: true},
		{name: "no list", method: "GET", target: withQ("l", ""), status: 400, member: true},
		{name: "bad address", method: "GET", target: withQ("a", "not an address"), status: 400, member: true},
		{name: "forged token", method: "POST", target: withQ("t", q.Get("t")[:tokenStampLen]+strings.Repeat("a", tokenMACLen)), body: "List-Unsubscribe=One-Click", contentType: form, status: 404, contains: "not valid", member: true},
		{name: "token of another member", method: "POST", target: withQ("a", "alice@example.com"), body: "List-Unsubscribe=One-Click", contentType: form, status: 404, contains: "not valid", member: true},
		{name: "address not subscribed", method: "GET", target: withQ("a", "stranger@example.com"), status: 404, contains: "not valid", member: true},
		{name: "token for another list", method: "GET", target: withQ("l", "open.lists.example.org"), status: 404, contains: "not valid", member: true},
		{name: "list that does not exist", method: "GET", target: withQ("l", "gone.lists.example.org"), status: 404, contains: "not valid", member: true},
		{name: "stamp moved back past the life", method: "POST", target: withQ("t", "aaaaaaa"+q.Get("t")[tokenStampLen:]), body: "List-Unsubscribe=One-Click", contentType: form, status: 410, contains: "expired", member: true},
		{name: "stamp from the future", method: "POST", target: withQ("t", "7777777"+q.Get("t")[tokenStampLen:]), body: "List-Unsubscribe=One-Click", contentType: form, status: 404, contains: "not valid", member: true},
		{name: "stamp not base32", method: "POST", target: withQ("t", "aaaaaa1"+q.Get("t")[tokenStampLen:]), body: "List-Unsubscribe=One-Click", contentType: form, status: 404, contains: "not valid", member: true},
		{name: "token one character short", method: "POST", target: withQ("t", q.Get("t")[1:]), body: "List-Unsubscribe=One-Click", contentType: form, status: 400, contains: "incomplete", member: true},
		{name: "link from before stamps", method: "POST", target: "/unsubscribe?a=bob%40example.net&l=1&t=" + strings.Repeat("a", 26), body: "List-Unsubscribe=One-Click", contentType: form, status: 410, contains: "expired", member: true},
		// The day-stamped format bound the member row id; a link in it,
		// even one whose day is today, is never honoured.
		{name: "link with a day stamp", method: "POST", target: withQ("t", formatDayStamp(e.st.Now())+strings.Repeat("a", tokenMACLen)), body: "List-Unsubscribe=One-Click", contentType: form, status: 410, contains: "expired", member: true},
		{name: "POST without the RFC 8058 body", method: "POST", target: path, body: "foo=bar", contentType: form, status: 400, contains: "One-Click", member: true},
		{name: "PUT", method: "PUT", target: path, status: 405, member: true},
		{name: "one-click POST", method: "POST", target: path, body: "List-Unsubscribe=One-Click", contentType: form, status: 200, contains: "has been unsubscribed"},
		// The subscription is gone, and with it what the token was
		// bound to: the same answer as for any link that does not check.
		{name: "repeated POST", method: "POST", target: path, body: "List-Unsubscribe=One-Click", contentType: form, status: 404, contains: "not valid"},
		{name: "GET after", method: "GET", target: path, status: 404, contains: "not valid"},
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
	carol := e.link(e.list, "carol@example.org")
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
	for _, l := range e.logs.All() {
		if l.Message == "member unsubscribed" && l.ContextMap()["list"] == testList {
			n++
		}
		for k, v := range l.ContextMap() {
			if s, ok := v.(string); ok && strings.Contains(s, q.Get("t")[tokenStampLen:]) {
				t.Errorf("token logged in %s of %q", k, l.Message)
			}
		}
	}
	if len(e.logs.FilterMessage("one-click unsubscribe link expired").All()) == 0 || len(e.logs.FilterMessage("one-click unsubscribe link not valid").All()) == 0 {
		t.Error("expired and invalid links are not logged")
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
	path := e.link(e.list, "alice@example.com")
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

// TestUnsubscribeLinkBinding: a link works for unsubscribe_link_life
// after the day it was made and no longer, and only for the
// subscription it was made for: not after the address left and joined
// again, not on a list created again under the name of a removed one.
func TestUnsubscribeLinkBinding(t *testing.T) {
	ctx := context.Background()
	oneClick := func(t *testing.T, e *env, path string) int {
		t.Helper()
		r := httptest.NewRequest("POST", path, strings.NewReader("List-Unsubscribe=One-Click"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		e.p.UnsubscribeHandler().ServeHTTP(w, r)
		return w.Code
	}
	subscribed := func(t *testing.T, e *env, list *store.List, addr string) bool {
		t.Helper()
		ok, err := e.st.IsMember(ctx, list.ID, addr)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	clock := func(e *env, at time.Time) { e.st.Now = func() time.Time { return at } }
	// Members are created on the wall clock; a link is made after them.
	made := time.Now().UTC().Truncate(time.Second).Add(time.Minute)

	for _, tc := range []struct {
		name   string
		life   time.Duration
		at     time.Time
		status int
	}{
		{"the next day", 0, made.Add(day), 200},
		{"last second of the default life", 0, made.Add(DefaultUnsubscribeLinkLife), 200},
		{"a second after the default life", 0, made.Add(DefaultUnsubscribeLinkLife + time.Second), 410},
		{"within a configured 30 days", 30 * day, made.Add(30 * day), 200},
		{"after a configured 30 days", 30 * day, made.Add(30*day + time.Second), 410},
		// A clock stepped back a little must not kill fresh links; a
		// stamp further ahead than that was never issued.
		{"clock 23 hours behind the stamp", 0, made.Add(-23 * time.Hour), 200},
		{"stamp more than a day ahead", 0, made.Add(-day - time.Second), 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.p.linkLife = DefaultUnsubscribeLinkLife
			if tc.life > 0 {
				e.p.linkLife = tc.life
			}
			clock(e, made)
			path := e.link(e.list, "bob@example.net")
			clock(e, tc.at)
			if got := oneClick(t, e, path); got != tc.status {
				t.Errorf("status %d, want %d", got, tc.status)
			}
			if got := subscribed(t, e, e.list, "bob@example.net"); got != (tc.status != 200) {
				t.Errorf("subscribed afterwards: %v", got)
			}
		})
	}

	// nextSecond waits until the wall clock, which stamps new members,
	// is past the second link was made in.
	nextSecond := func(t *testing.T, link string) {
		t.Helper()
		u, err := url.Parse(link)
		if err != nil {
			t.Fatal(err)
		}
		stamp, ok := parseStamp(u.Query().Get("t")[:tokenStampLen])
		if !ok {
			t.Fatalf("link %s has no stamp", link)
		}
		time.Sleep(time.Until(stamp.Add(time.Second + 10*time.Millisecond)))
	}

	t.Run("re-subscribing invalidates", func(t *testing.T) {
		e := newEnv(t)
		old := e.link(e.list, "bob@example.net")
		if removed, err := e.st.Unsubscribe(ctx, e.list.ID, "bob@example.net", "test"); err != nil || !removed {
			t.Fatalf("unsubscribe: %v %v", removed, err)
		}
		nextSecond(t, old)
		e.add("member", "bob@example.net")
		if got := oneClick(t, e, old); got != 404 {
			t.Errorf("old link after re-subscribing: status %d, want 404", got)
		}
		if !subscribed(t, e, e.list, "bob@example.net") {
			t.Fatal("the old link removed the new subscription")
		}
		if got := oneClick(t, e, e.link(e.list, "bob@example.net")); got != 200 || subscribed(t, e, e.list, "bob@example.net") {
			t.Errorf("new link: status %d", got)
		}
	})

	t.Run("a list removed and created again invalidates", func(t *testing.T) {
		e := newEnv(t)
		const addr = "other@lists.example.org"
		add := func(l string) *store.List {
			t.Helper()
			if _, err := e.st.AddMembers(ctx, l, "member", []store.NewMember{{Address: "dave@example.com"}}, nil); err != nil {
				t.Fatal(err)
			}
			got, err := e.st.GetList(ctx, l)
			if err != nil {
				t.Fatal(err)
			}
			return got
		}
		if _, err := e.st.CreateList(ctx, addr); err != nil {
			t.Fatal(err)
		}
		first := add(addr)
		old := e.link(first, "dave@example.com")
		if err := e.st.RemoveList(ctx, addr); err != nil {
			t.Fatal(err)
		}
		if got := oneClick(t, e, old); got != 404 {
			t.Errorf("link of a removed list: status %d, want 404", got)
		}
		nextSecond(t, old)
		if _, err := e.st.CreateList(ctx, addr); err != nil {
			t.Fatal(err)
		}
		second := add(addr)
		if second.ListID != first.ListID {
			t.Fatalf("List-Id %q, was %q", second.ListID, first.ListID)
		}
		if second.ID == first.ID {
			t.Errorf("the new list reuses id %d", first.ID)
		}
		if got := oneClick(t, e, old); got != 404 {
			t.Errorf("old link on the re-created list: status %d, want 404", got)
		}
		if !subscribed(t, e, second, "dave@example.com") {
			t.Error("the old link removed dave from the new list")
		}
	})
}

// TestMadeForSubscription: stamps count whole seconds, so a link made in
// the second its subscription was created works, and one made before the
// second the subscription was created does not.
func TestMadeForSubscription(t *testing.T) {
	made := time.Date(2026, 12, 8, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		created time.Time
		want    bool
	}{
		{made.Add(-day), true},
		{made.Add(-time.Millisecond), true},
		{made, true},
		{made.Add(999 * time.Millisecond), true},
		{made.Add(time.Second), false},
		{made.Add(day), false},
	} {
		if got := madeForSubscription(made, tc.created); got != tc.want {
			t.Errorf("link made %s, subscription created %s: %v, want %v", made, tc.created, got, tc.want)
		}
	}
}

// formatDayStamp is the stamp of the format before seconds: 4 base32
// digits of the day number.
func formatDayStamp(at time.Time) string {
	d := at.Unix() / int64(day/time.Second)
	var b [4]byte
	for i := 3; i >= 0; i-- {
		b[i] = tokenDigits[d&31]
		d >>= 5
	}
	return string(b[:])
}
