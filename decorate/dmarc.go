package decorate

import (
	"postlist/message"
	"strings"
)

// DMARC mitigation. A post from a domain publishing p=reject or
// p=quarantine fails DMARC at the members' providers once the list has
// changed what the author's DKIM signature covers, so the list takes
// responsibility for the message: From becomes the list's address
// ("Alice via Test" <test@lists.example.org>) and the author moves to
// Reply-To or Cc, so that replies still reach them.
//
// postlist applies the chosen mitigation to every post of the list, as
// Mailman does with dmarc_mitigate_unconditionally: deciding per poster
// would need a DNS lookup of the author domain's policy, which does not
// belong in a pure package and is left to the milter, which already sees
// the authentication results.

// mungeFrom rewrites dst's From to the list and records the author of src
// in dst: in Reply-To when the list does not set Reply-To itself
// (no_munging) and the poster set none, otherwise in Cc, as Mailman does.
func mungeFrom(dst, src *message.Message, l List) {
	orig := src.Get("From")
	if orig == "" {
		return
	}
	name, addr := "", ""
	if as, err := message.ParseAddressList(orig); err == nil && len(as) > 0 {
		name, addr = as[0].Name, as[0].Address
	} else {
		addr = addrSpec(orig)
	}
	if strings.TrimSpace(name) == "" {
		// Never show a bare address as the name: it would look like the
		// sender's address and invite replies to the wrong place.
		name = strings.Replace(addr, "@", " at ", 1)
	}
	dst.Set("From", message.FormatAddress(name+" via "+l.DisplayName, l.Address))
	if l.ReplyGoesToList == "no_munging" || l.ReplyGoesToList == "" {
		if !dst.Has("Reply-To") {
			dst.Set("Reply-To", orig)
		}
		return
	}
	appendAddress(dst, "Cc", orig)
}

// wrappedFields are the fields of a post the outer message of
// wrap_message keeps: what a reader and a threading MUA need.
var wrappedFields = map[string]bool{
	"date": true, "subject": true, "to": true, "cc": true, "reply-to": true,
	"message-id": true, "in-reply-to": true, "references": true,
}

// wrapMessage implements wrap_message: the post, exactly as it arrived
// (inner), becomes a message/rfc822 body of a new message from the list,
// so the author's signature stays verifiable inside it. The outer message
// keeps the post's Message-ID so threads do not break.
func wrapMessage(m *message.Message, inner []byte, l List) *message.Message {
	outer := &message.Message{EOL: m.EOL}
	for _, f := range m.Fields {
		if wrappedFields[strings.ToLower(f.Name)] {
			outer.Fields = append(outer.Fields, f)
		}
	}
	mungeFrom(outer, m, l)
	outer.Set("MIME-Version", "1.0")
	outer.Set("Content-Type", "message/rfc822")
	outer.Set("Content-Disposition", "inline")
	cte := "7bit"
	if !isASCIIBytes(inner) {
		cte = "8bit"
	}
	outer.Set("Content-Transfer-Encoding", cte)
	outer.Body = inner
	return outer
}
