package pipeline

import (
	"context"
	"fmt"
	"testing"

	"go.uber.org/zap"

	"postlist/deliver"
	"postlist/internal/testenv/storetest"
	"postlist/store"
)

// BenchmarkRenderOneClick is the cost of one member's copy on a list that
// offers one-click links (the subscription lookup the link is bound to,
// the token, the member's own header fields), against mailto links only.
func BenchmarkRenderOneClick(b *testing.B) {
	ctx := context.Background()
	st, l := storetest.OpenList(b, testList)
	var ms []store.NewMember
	for i := range 10000 {
		ms = append(ms, store.NewMember{Address: fmt.Sprintf("m%05d@example.com", i)})
	}
	if _, err := st.AddMembers(ctx, testList, "member", ms, nil); err != nil {
		b.Fatal(err)
	}
	secret, err := Secret(ctx, st)
	if err != nil {
		b.Fatal(err)
	}
	p := New(Options{Store: st, Log: zap.NewNop(), Delimiter: "+", BaseURL: baseURL, Secret: secret})
	mailtoOnly := New(Options{Store: st, Log: zap.NewNop(), Delimiter: "+"})
	in, err := st.Intake(ctx, &store.IntakeMessage{
		MessageID: "<x@example.com>", Sender: "m00000@example.com", Body: []byte(crlf(memberPost)),
		Recipients: []store.IntakeRecipient{{Recipient: testList, List: testList, Kind: "post"}},
	})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := p.RunOnce(ctx); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		p    *Pipeline
	}{{"one-click", p}, {"mailto-only", mailtoOnly}} {
		b.Run(c.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				job := deliver.Job{MessageID: in.MessageID, ListID: l.ID, Recipients: []string{ms[i%len(ms)].Address}}
				m, err := c.p.Render(ctx, job)
				if err != nil {
					b.Fatal(err)
				}
				if m.Own == nil {
					b.Fatal("the post was not decorated")
				}
				i++
			}
		})
	}
}
