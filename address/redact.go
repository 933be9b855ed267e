package address

import (
	"regexp"
	"strings"
)

// Redacted stands for the part of an address or link that Redact hides.
const Redacted = "…"

// Redact returns addr fit for a log line: the secret part of a list's
// subaddress goes, the rest stays, so that a log reader still sees which
// list and which member a line is about but cannot act as them.
//
//   - NAME-confirm+TOKEN@D becomes NAME-confirm+…@D: the token alone
//     confirms a subscription or decides a held post.
//   - NAME-bounces+LOCAL=DOMAIN=SIG@D becomes NAME-bounces+LOCAL=DOMAIN=…@D:
//     with the signature anyone could make the member's mail count as a
//     bounce. SIG is whatever follows the last "="; an unsigned (Mailman)
//     LOCAL=DOMAIN extension has nothing secret and is kept.
//   - a link with a t= query parameter (the one-click unsubscribe link)
//     keeps everything but the token.
//
// delim is the recipient delimiter ([mta] verp_delimiter); "" accepts any
// character a delimiter may be, for callers that do not know it: hiding
// too much is harmless here, too little is not. Anything else, including
// text that is no address at all, is returned unchanged.
func Redact(addr, delim string) string {
	if strings.Contains(addr, "://") || strings.HasPrefix(addr, "/") {
		return tokenParam.ReplaceAllString(addr, "${1}"+Redacted)
	}
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 {
		return addr
	}
	local, rest := addr[:at], addr[at:]
	prefix, suffix := "", ""
	if strings.HasPrefix(local, "<") {
		prefix, local = "<", local[1:]
	}
	if len(local) >= 2 && local[0] == '"' && local[len(local)-1] == '"' {
		prefix, suffix, local = prefix+`"`, `"`, local[1:len(local)-1]
	}
	return prefix + redactLocal(local, delim) + suffix + rest
}

// RedactText is Redact for every address and link in a line of text,
// such as an SMTP reply that names the recipient it refuses.
func RedactText(text, delim string) string {
	if !strings.ContainsAny(text, "@/") {
		return text
	}
	return inText.ReplaceAllStringFunc(text, func(a string) string { return Redact(a, delim) })
}

// inText matches what RedactText looks at: links, and addresses up to
// the characters that end them in replies and headers.
var inText = regexp.MustCompile(`[a-z][a-z0-9+.-]*://[^\s<>"]+|[^\s<>"(),;:]+@[^\s<>"(),;:]+`)

// tokenParam matches the token of a one-click link's query.
var tokenParam = regexp.MustCompile(`([?&;]t=)[^&;#\s>]*`)

// redactLocal hides the extension secret of a -confirm or -bounces local
// part. With a known delimiter the extension starts at its first
// occurrence, as the resolver reads it; without one, right after the
// first "-confirm" or "-bounces" that a possible delimiter follows (a
// list name may itself hold characters such as "_" that could be one).
func redactLocal(local, delim string) string {
	cut := -1
	lower := lowerASCII(local)
	if delim != "" {
		cut = strings.IndexAny(local, delimiters(delim))
		if cut > 0 && !strings.HasSuffix(lower[:cut], "-"+string(Confirm)) && !strings.HasSuffix(lower[:cut], "-"+string(Bounces)) {
			return local
		}
	} else {
		for i := 0; i < len(lower) && cut < 0; i++ {
			for _, w := range []string{"-" + string(Confirm), "-" + string(Bounces)} {
				if j := i + len(w); strings.HasPrefix(lower[i:], w) && j < len(local) && usableDelimiter(local[j]) {
					cut = j
					break
				}
			}
		}
	}
	if cut <= 0 || cut == len(local)-1 {
		return local
	}
	if strings.HasSuffix(lower[:cut], "-"+string(Confirm)) {
		return local[:cut+1] + Redacted
	}
	return local[:cut+1] + RedactVERP(local[cut+1:])
}

// RedactVERP is Redact for the extension of a -bounces address alone
// (Target.Ext): LOCAL=DOMAIN=SIG becomes LOCAL=DOMAIN=…, an unsigned
// LOCAL=DOMAIN stays.
func RedactVERP(ext string) string {
	if strings.Count(ext, "=") < 2 {
		return ext
	}
	return ext[:strings.LastIndexByte(ext, '=')+1] + Redacted
}
