package commands

import (
	"postlist/address"
	"postlist/message"
)

// Sender returns who a command message is from: the first From address,
// else the envelope sender, normalised, with the From display name.
// Mailman answers From rather than the envelope sender; either way the
// confirmation request goes to the address it would subscribe, so only its
// owner can complete it.
func Sender(m *message.Message, envSender string) (name, addr string) {
	for _, v := range m.Values("From") {
		as, err := message.ParseAddressList(v)
		if err != nil {
			continue
		}
		for _, a := range as {
			if n, err := address.Normalize(a.Address); err == nil {
				return message.OneLine(a.Name), n
			}
		}
	}
	if n, err := address.Normalize(envSender); err == nil {
		return "", n
	}
	return "", ""
}
