package syslog

import (
	"strings"

	"github.com/tinylib/msgp/msgp"

	"github.com/trailstack/trailstack/core"
	"github.com/trailstack/trailstack/record"
)

// parseSeverity reads a severity from a number 0-7 (or its string) or a name.
func parseSeverity(v record.Value) (int, bool) {
	if v == nil {
		return 0, false
	}
	switch v.Type() {
	case msgp.IntType, msgp.UintType:
		n, _, err := msgp.ReadInt64Bytes(v)
		return int(n), err == nil && n >= 0 && n <= 7
	case msgp.StrType, msgp.BinType:
		b, _ := v.Bytes()
		return severityName(b)
	}
	return 0, false
}

// severityName reads a name in core's table or a digit 0-7: DEFAULT is not a syslog level.
func severityName(b []byte) (int, bool) {
	if len(b) == 1 && b[0] >= '0' && b[0] <= '7' {
		return int(b[0] - '0'), true
	}
	sev, ok := core.SeverityNamed(b)
	return int(sev), ok && sev != core.SeverityDefault
}

// facilities are RFC 5424's facility codes by their usual names.
var facilities = map[string]int{
	"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
	"news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "security": 13,
	"console": 14, "solaris-cron": 15, "local0": 16, "local1": 17, "local2": 18,
	"local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

func severityByName(s string) (int, bool) { return severityName([]byte(strings.TrimSpace(s))) }
