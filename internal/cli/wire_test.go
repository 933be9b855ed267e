package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"reflect"
	"testing"
	"time"

	"go.uber.org/zap"

	"postlist/config"
	"postlist/daemon"
	"postlist/pipeline"
	"postlist/store"
)

// TestVerbsBuildTheDaemonsSystem: the System a deciding verb builds and
// the one `postlist serve` runs, from one configuration file and one
// database, were built with the same options — the same VERP key, the
// unsubscribe secret, token lifetimes, base URL, owner, delimiter and
// delivery settings — and those are the file's values, not defaults.
func TestVerbsBuildTheDaemonsSystem(t *testing.T) {
	e := newEnv(t)
	text := fmt.Sprintf(`[database]
path = %q
[mta]
verp_delimiter = "_"
smtp_host = "127.0.0.2"
smtp_port = 2525
max_delivery_threads = 3
smtp_connect_timeout = "7s"
verp_bounce_window = "11d"
max_autoresponses_per_day = 4
[http]
base_url = "https://lists.example.org/"
unsubscribe_link_life = "40d"
[site]
owner = "listmaster@example.org"
pending_request_life = "2h"
moderator_request_life = "9h"
`, e.db)
	if err := os.WriteFile(e.cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a := &app{cfgPath: e.cfg, explicit: true, stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}
	verb, err := a.system(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer verb.Close()
	cfg, err := config.Load(e.cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	serve, err := daemon.Build(ctx, cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer serve.Close()

	vo, so := verb.Options().Settings(), serve.Options().Settings()
	for _, c := range []struct {
		part      string
		verb, srv any
	}{
		{"pipeline", vo.Pipeline, so.Pipeline},
		{"commands", vo.Commands, so.Commands},
		{"bounce", vo.Bounce, so.Bounce},
		{"deliver", vo.Deliver, so.Deliver},
	} {
		if !reflect.DeepEqual(c.verb, c.srv) {
			t.Errorf("%s options differ:\nverbs:  %+v\nserve: %+v", c.part, c.verb, c.srv)
		}
	}

	// The agreed values are the database's keys and the file's settings.
	st, err := store.Open(ctx, e.db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.VERPWindow = 11 * 24 * time.Hour
	signer, err := st.VERPSigner(ctx)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := pipeline.Secret(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	o := vo
	for _, c := range []struct {
		what      string
		got, want any
	}{
		{"pipeline signer", o.Pipeline.Signer, signer},
		{"bounce signer", o.Bounce.Signer, signer},
		{"unsubscribe secret", o.Pipeline.Secret, secret},
		{"pipeline delimiter", o.Pipeline.Delimiter, "_"},
		{"commands delimiter", o.Commands.Delimiter, "_"},
		{"bounce delimiter", o.Bounce.Delimiter, "_"},
		{"base URL", o.Pipeline.BaseURL, "https://lists.example.org/"},
		{"pipeline site owner", o.Pipeline.SiteOwner, "listmaster@example.org"},
		{"commands site owner", o.Commands.SiteOwner, "listmaster@example.org"},
		{"bounce site owner", o.Bounce.SiteOwner, "listmaster@example.org"},
		{"held token lifetime", o.Pipeline.HeldTokenLifetime, 9 * time.Hour},
		{"request lifetime", o.Commands.TokenLifetime, 2 * time.Hour},
		{"moderator request lifetime", o.Commands.ModeratorTokenLifetime, 9 * time.Hour},
		{"smart host", o.Deliver.Addr, "127.0.0.2:2525"},
		{"delivery threads", o.Deliver.Workers, 3},
		{"connect timeout", o.Deliver.DialTimeout, 7 * time.Second},
		{"VERP bounce window", o.Bounce.Signer.Window, 11 * 24 * time.Hour},
		{"pipeline autoresponse cap", o.Pipeline.MaxAutoresponsesPerDay, 4},
		{"commands autoresponse cap", o.Commands.MaxAutoresponsesPerDay, 4},
		{"unsubscribe link life", o.Pipeline.UnsubscribeLinkLife, 40 * 24 * time.Hour},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	if len(signer.Key) == 0 || len(secret) == 0 {
		t.Fatal("the database has no VERP key or unsubscribe secret")
	}

	// The parts are linked: queued mail wakes the deliverer, replies to
	// hold notices reach the pipeline, and copies are rendered by it.
	full := verb.Options()
	if full.Pipeline.Notify == nil || full.Commands.Notify == nil || full.Bounce.Notify == nil ||
		full.Commands.ConfirmHeld == nil || full.Deliver.Render == nil {
		t.Error("the parts are not linked to each other")
	}
	if verb.Moderation == nil {
		t.Error("no moderation service")
	}
}
