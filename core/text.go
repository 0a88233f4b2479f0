package core

import "unicode/utf8"

// TruncMark ends a value that was cut to fit a destination's limit.
const TruncMark = " [truncated]"

// RuneCut is where to cut s to keep at most n bytes without splitting a UTF-8 sequence: n,
// or the start of the rune that n falls inside.
func RuneCut[T ~string | ~[]byte](s T, n int) int {
	if n >= len(s) {
		return len(s)
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return n
}

// IsHex reports whether s is n hexadecimal digits, in either case.
func IsHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}
