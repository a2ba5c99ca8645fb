// Package strutil holds string helpers shared by the components.
package strutil

import "unicode/utf8"

// Ellipsis ends a string Truncate shortened.
const Ellipsis = "…"

// Truncate returns s when it is at most n bytes long. Otherwise it returns
// the longest prefix of s that, followed by Ellipsis, fits in n bytes, cut
// at a rune boundary so that valid UTF-8 stays valid, followed by Ellipsis
// (or only that prefix when n is too small for Ellipsis). The result is
// never longer than n bytes, which makes it fit any maxLength of n
// characters an API field declares. It is for messages shown to people
// (status, events, conditions), not for names: Ellipsis is not valid in a
// Kubernetes name or an image tag.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	if n <= 0 {
		return ""
	}
	suffix := Ellipsis
	if n < len(Ellipsis) {
		suffix = ""
	}
	cut := n - len(suffix)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + suffix
}
