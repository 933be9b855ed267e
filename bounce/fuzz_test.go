package bounce_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"postlist/address"
	"postlist/bounce"
	"postlist/store"
)

var statusShape = regexp.MustCompile(`^([245]\.\d{1,3}\.\d{1,3})?$`)

// FuzzParseDSN: whatever arrives at -bounces, the parser ends without
// panicking and reports only well-formed failures: valid addresses, known
// kinds, a status of RFC 3463's shape, a bounded one-line diagnostic.
// Seeds are the samples in testdata plus testdata/fuzz/FuzzParseDSN, and
// run with every go test.
func FuzzParseDSN(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.eml"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	kinds := map[string]bool{store.BouncePermanent: true, store.BounceTemporary: true, store.BouncePolicy: true}
	f.Fuzz(func(t *testing.T, msg []byte) {
		fs, _ := bounce.ParseDSN(msg)
		if len(fs) > 100 {
			t.Fatalf("%d failures", len(fs))
		}
		seen := map[string]bool{}
		for _, x := range fs {
			if n, err := address.Normalize(x.Address); err != nil || n != x.Address {
				t.Fatalf("address %q is not normalised: %q, %v", x.Address, n, err)
			}
			if seen[strings.ToLower(x.Address)] {
				t.Fatalf("address %q reported twice", x.Address)
			}
			seen[strings.ToLower(x.Address)] = true
			if !kinds[x.Kind] {
				t.Fatalf("kind %q", x.Kind)
			}
			if !strings.HasPrefix(x.Action, "failed") && !strings.HasPrefix(x.Action, "delayed") && !strings.HasPrefix(x.Action, "error") {
				t.Fatalf("action %q", x.Action)
			}
			if !statusShape.MatchString(x.Status) {
				t.Fatalf("status %q", x.Status)
			}
			if len(x.Diagnostic) > 510 || strings.ContainsAny(x.Diagnostic, "\r\n\x00") {
				t.Fatalf("diagnostic of %d bytes: %q", len(x.Diagnostic), x.Diagnostic)
			}
		}
	})
}
