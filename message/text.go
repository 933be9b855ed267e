package message

// MaxTextBody is how many bytes of a text part TextBody reads at all.
const MaxTextBody = 64e3

// TextBody returns the decoded text of raw's first text/plain part
// (Mailman reads commands from that part only) and whether raw has other,
// non-text parts that were not read. Undecodable text is returned as
// written rather than dropped.
func TextBody(raw []byte) (text string, otherParts bool) {
	if CheckHeader(raw) != nil {
		return string(Parse(raw).Body), false
	}
	found := false
	for _, p := range Walk(raw) {
		mt := p.MediaType
		if mt == "" {
			mt = "text/plain"
		}
		switch {
		case p.Multipart():
		case mt == "text/plain" && !found:
			text, found = p.Text(MaxTextBody), true
		case mt != "text/plain" && mt != "text/html":
			otherParts = true
		}
	}
	return text, otherParts
}
