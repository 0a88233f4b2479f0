package syslog

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tinylib/msgp/msgp"

	"github.com/trailstack/trailstack/accessor"
	"github.com/trailstack/trailstack/core"
	"github.com/trailstack/trailstack/record"
)

// RFC 5424 limits (section 6).
const (
	maxHostname = 255
	maxAppName  = 48
	maxProcID   = 128
	maxMsgID    = 32
	maxSDName   = 32
)

// framing is how messages are separated on a stream.
type framing int

const (
	framingLF    framing = iota // one message per line (RFC 6587 non-transparent)
	framingOctet                // "LEN SP MSG" (RFC 6587 octet counting, RFC 5425)
	framingNone                 // one message per datagram (UDP)
)

// formatter turns records into RFC 5424 frames. It is built once per instance and shared by
// its workers; per-call state lives in a scratch. It writes the frame itself rather than
// through go-syslog's rfc5424 builder, which costs several times as much and allocates per
// record (BenchmarkGoSyslogBuilder20k beside BenchmarkFormat20k; docs/benchmarks.md). go-syslog's
// strict parser checks the frames it writes in the tests instead.
type formatter struct {
	pris                              [8]string // "<PRI>1 " for each severity of the facility: the message's start
	hostname, appname, procid, msgid  *accessor.Template
	hdrSlots                          []int  // the values hostname, appname, procid and msgid read
	hdrInKube                         []bool // for each of hdrSlots: a value of the kubernetes map (see kept)
	sdID                              string
	tokenSD                           []byte // [<token>@41058], or nothing
	sd                                []sdParam
	messageSlot, streamSlot           int
	severitySlots                     []int
	stdoutSev, stderrSev, fallbackSev int
	framing                           framing
	maxSize                           int
	ex                                *accessor.Extractor
}

type sdParam struct {
	name string
	tmpl *accessor.Template
	slot int // >= 0 when the template is one value, which may be a map to expand
}

// scratch is one worker's reusable state.
type scratch struct {
	vals  []record.Value
	memo  accessor.Memo  // the last record's kubernetes map, nearly always the next one's
	stamp accessor.Stamp // the memo's word for vals' kubernetes values
	msg   []byte
	json  record.JSON

	tag accessor.TagIdentity // the container the chunk's tag names

	// Records of this flush whose MSG could not be rendered whole as JSON, and why; and
	// those cut to max_size.
	jsonErrs  int
	jsonErr   error
	truncated int

	// The timestamp up to the seconds, for the last second seen: records of a chunk
	// mostly share their second.
	tsSec    int64
	tsPrefix []byte

	// HOSTNAME APP-NAME PROCID MSGID as last rendered, for the last few sets of values they
	// were rendered from: a chunk's records are one container's, or a few, and share them but
	// for the stream, which MSGID names by default.
	hdrs    [keptHeaders]keptHeader
	hdrNext int // the one the next new header replaces
}

const keptHeaders = 4 // a container's two streams, twice over

// keptHeader is a header as rendered, and what it was rendered from: the tag, the values
// its templates read, copied (their buffers reused from one header to the next), and the
// Extract stamp that vouches for those of the kubernetes map.
type keptHeader struct {
	tag   string
	stamp accessor.Stamp
	vals  [][]byte
	has   []bool // false: the value was absent
	out   []byte
}

// kept returns the header last rendered from this record's tag and values, or nil. With a
// stamp the values of the kubernetes map need no comparing: only the others (the stream).
func (f *formatter) kept(s *scratch, tag string) []byte {
	for i := range s.hdrs {
		h := &s.hdrs[i]
		if h.out == nil || h.tag != tag {
			continue
		}
		var vouched []bool
		if s.stamp != 0 && h.stamp == s.stamp {
			vouched = f.hdrInKube
		}
		if h.same(s.vals, f.hdrSlots, vouched) {
			h.tag = tag // this flush's string: the next comparison is of pointers (TagIdentity.Of)
			return h.out
		}
	}
	return nil
}

// same compares the values at slots with h's, but those vouched for (nil: none).
func (h *keptHeader) same(vals []record.Value, slots []int, vouched []bool) bool {
	for i, slot := range slots {
		if vouched != nil && vouched[i] {
			continue
		}
		v := vals[slot]
		if (v != nil) != h.has[i] || !bytes.Equal(v, h.vals[i]) {
			return false
		}
	}
	return true
}

func (s *scratch) keepHeader(tag string, slots []int, out []byte) {
	h := &s.hdrs[s.hdrNext]
	s.hdrNext = (s.hdrNext + 1) % keptHeaders
	h.tag, h.stamp = tag, s.stamp
	if h.vals == nil {
		h.vals, h.has = make([][]byte, len(slots)), make([]bool, len(slots))
	}
	for i, slot := range slots {
		v := s.vals[slot]
		h.vals[i], h.has[i] = append(h.vals[i][:0], v...), v != nil
	}
	h.out = append(h.out[:0], out...)
}

func (f *formatter) newScratch() *scratch {
	return &scratch{vals: make([]record.Value, f.ex.Slots()), msg: make([]byte, 0, 4096)}
}

// appendFrame appends one framed message for r to dst.
func (f *formatter) appendFrame(dst []byte, r *record.Record, tag string, s *scratch) []byte {
	s.stamp = f.ex.Extract(s.tag.Of(tag), record.Value(r.Body), s.vals, &s.memo)
	switch f.framing {
	case framingOctet:
		s.msg = f.appendMessage(s.msg[:0], r, tag, s)
		dst = strconv.AppendInt(dst, int64(len(s.msg)), 10)
		dst = append(dst, ' ')
		return append(dst, s.msg...)
	case framingLF:
		dst = f.appendMessage(dst, r, tag, s)
		return append(dst, '\n')
	}
	return f.appendMessage(dst, r, tag, s)
}

// appendMessage appends the RFC 5424 message itself, at most maxSize bytes.
func (f *formatter) appendMessage(dst []byte, r *record.Record, tag string, s *scratch) []byte {
	start := len(dst)
	dst = append(dst, f.pris[f.severity(s.vals, r.Trace)]...)
	dst = s.appendTimestamp(dst, r.Sec, r.Nsec)
	dst = append(dst, ' ')
	if kept := f.kept(s, tag); kept != nil {
		dst = append(dst, kept...)
	} else {
		h := len(dst)
		dst = appendHeader(dst, f.hostname, s.vals, tag, maxHostname)
		dst = append(dst, ' ')
		dst = appendHeader(dst, f.appname, s.vals, tag, maxAppName)
		dst = append(dst, ' ')
		dst = appendHeader(dst, f.procid, s.vals, tag, maxProcID)
		dst = append(dst, ' ')
		dst = appendHeader(dst, f.msgid, s.vals, tag, maxMsgID)
		s.keepHeader(tag, f.hdrSlots, dst[h:])
	}
	dst = append(dst, ' ')
	// The destination's token first, which is never dropped: without it the destination
	// drops the message.
	dst = append(dst, f.tokenSD...)
	sdStart := len(dst)
	dst = f.appendSD(dst, s.vals, tag)
	if len(dst)-start > f.maxSize/2 {
		// Structured data may not crowd out the message: past half of max_size it is dropped.
		dst = dst[:sdStart]
	}
	if len(dst) == sdStart && len(f.tokenSD) == 0 {
		dst = append(dst, '-')
	}

	hdr := len(dst)
	dst = append(dst, ' ')
	msgStart := len(dst)
	if v := s.vals[f.messageSlot]; v != nil {
		switch v.Type() {
		case msgp.StrType, msgp.BinType:
			b, _ := v.Bytes()
			dst = appendMsgText(dst, b, f.framing == framingLF)
		case msgp.MapType, msgp.ArrayType:
			dst = s.appendJSON(dst, v, false)
		default:
			dst = accessor.AppendScalar(dst, v)
		}
	} else {
		// No message key: the kubernetes filter merged a JSON log into the body.
		dst = s.appendJSON(dst, record.Value(r.Body), true)
	}
	if len(dst) == msgStart {
		return dst[:hdr] // no MSG at all rather than an empty one
	}
	if len(dst)-start > f.maxSize {
		dst = truncate(dst, start, msgStart, f.maxSize)
		s.truncated++
	}
	return dst
}

// truncate cuts the MSG so the message is at most max bytes, on a UTF-8 boundary, marked.
func truncate(dst []byte, start, msgStart, max int) []byte {
	keep := start + max - len(core.TruncMark)
	if keep < msgStart {
		return dst[:msgStart-1] // the header alone fills max_size: send no MSG
	}
	return append(dst[:msgStart+core.RuneCut(dst[msgStart:], keep-msgStart)], core.TruncMark...)
}

// severity is the first severity field understood; else err (3) for a stack trace the core
// joined; else the stream's.
func (f *formatter) severity(vals []record.Value, trace bool) int {
	for _, slot := range f.severitySlots {
		if v := vals[slot]; v != nil { // mostly absent
			if sev, ok := parseSeverity(v); ok {
				return sev
			}
		}
	}
	if trace {
		return 3
	}
	if v := vals[f.streamSlot]; v != nil {
		switch {
		case v.Equal("stderr"):
			return f.stderrSev
		case v.Equal("stdout"):
			return f.stdoutSev
		}
	}
	return f.fallbackSev
}

// appendHeader renders a header field: printable US-ASCII only (others become '_'), at most
// max bytes, NILVALUE when empty.
func appendHeader(dst []byte, t *accessor.Template, vals []record.Value, tag string, max int) []byte {
	start := len(dst)
	dst, _ = t.Render(dst, vals, tag)
	if len(dst)-start > max {
		dst = dst[:start+max]
	}
	for i := start; i < len(dst); i++ {
		if c := dst[i]; c < 33 || c > 126 {
			dst[i] = '_'
		}
	}
	if len(dst) == start {
		dst = append(dst, '-')
	}
	return dst
}

func (f *formatter) appendSD(dst []byte, vals []record.Value, tag string) []byte {
	if len(f.sd) == 0 {
		return dst // no parameters, no element: the default
	}
	start := len(dst)
	dst = append(dst, '[')
	dst = append(dst, f.sdID...)
	open := len(dst)
	for i := range f.sd {
		p := &f.sd[i]
		if p.slot >= 0 && vals[p.slot].Type() == msgp.MapType {
			// <name>.<key>, at most 32 bytes in all, with room for a byte of the key.
			prefix := p.name[:min(len(p.name), maxSDName-2)]
			_ = vals[p.slot].Range(func(k []byte, v record.Value) bool {
				mark := len(dst)
				dst = append(dst, ' ')
				dst = append(dst, prefix...)
				dst = append(dst, '.')
				dst = appendSDName(dst, k, mark+1)
				dst = append(dst, `="`...)
				valStart := len(dst)
				dst = accessor.AppendScalar(dst, v)
				dst = escapeSDValue(dst, valStart)
				dst = append(dst, '"')
				return true
			})
			continue
		}
		mark := len(dst)
		dst = append(dst, ' ')
		dst = append(dst, p.name...)
		dst = append(dst, `="`...)
		valStart := len(dst)
		var ok bool
		if dst, ok = p.tmpl.Render(dst, vals, tag); !ok {
			dst = dst[:mark] // a missing value leaves the parameter out
			continue
		}
		dst = escapeSDValue(dst, valStart)
		dst = append(dst, '"')
	}
	if len(dst) == open {
		return dst[:start] // no parameter: no element
	}
	return append(dst, ']')
}

// appendSDName appends a PARAM-NAME piece: printable US-ASCII but '=', ' ', ']', '"',
// the whole name (from nameStart) at most 32 bytes.
func appendSDName(dst, k []byte, nameStart int) []byte {
	for _, c := range k {
		if len(dst)-nameStart >= maxSDName {
			break
		}
		if c < 33 || c > 126 || c == '=' || c == ']' || c == '"' {
			c = '_'
		}
		dst = append(dst, c)
	}
	return dst
}

// escapeSDValue escapes '"', '\' and ']' in dst[from:] (RFC 5424 section 6.3.3), repairs
// invalid UTF-8, and turns CR, LF and NUL into spaces so that a value never breaks framing.
func escapeSDValue(dst []byte, from int) []byte {
	needs := false
	for _, c := range dst[from:] {
		if c == '"' || c == '\\' || c == ']' || c >= utf8.RuneSelf || c == '\n' || c == '\r' || c == 0 {
			needs = true
			break
		}
	}
	if !needs {
		return dst
	}
	// Rare: copy the value aside and write it back escaped.
	val := strings.Clone(string(dst[from:]))
	dst = dst[:from]
	for i := 0; i < len(val); {
		c := val[i]
		if c < utf8.RuneSelf {
			switch c {
			case '"', '\\', ']':
				dst = append(dst, '\\')
			case '\n', '\r', 0:
				c = ' '
			}
			dst = append(dst, c)
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(val[i:])
		if r == utf8.RuneError && size == 1 {
			dst = utf8.AppendRune(dst, utf8.RuneError)
		} else {
			dst = append(dst, val[i:i+size]...)
		}
		i += size
	}
	return dst
}

// appendMsgText appends a log line as MSG: the trailing newline trimmed, invalid UTF-8
// replaced by U+FFFD, and with line framing, CR, LF and NUL replaced by spaces so that a
// multi-line message stays one message (as Papertrail's own remote_syslog2 does).
func appendMsgText(dst, b []byte, oneLine bool) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	// Nearly every line needs nothing done: printable ASCII, told eight bytes at a time, or
	// else valid UTF-8 without the bytes that break a line.
	if plainASCII(b) || (utf8.Valid(b) && (!oneLine || (bytes.IndexByte(b, '\n') < 0 && bytes.IndexByte(b, '\r') < 0 && bytes.IndexByte(b, 0) < 0))) {
		return append(dst, b...)
	}
	start := 0
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			if oneLine && (c == '\n' || c == '\r' || c == 0) {
				dst = append(dst, b[start:i]...)
				dst = append(dst, ' ')
				start = i + 1
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, b[start:i]...)
			dst = utf8.AppendRune(dst, utf8.RuneError)
			start = i + 1
		}
		i += size
	}
	return append(dst, b[start:]...)
}

// plainASCII tells whether b holds ASCII at or above the space only: no UTF-8 to check and no
// CR, LF or NUL to replace.
func plainASCII(b []byte) bool {
	// A byte at or above 0x80 has its high bit set; one below 0x20 sets it in x-low, and a
	// borrow out of it reaches only lanes above a byte that is out already.
	const low, high = 0x2020202020202020, 0x8080808080808080
	for len(b) >= 32 {
		x, y := binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])
		z, w := binary.LittleEndian.Uint64(b[16:]), binary.LittleEndian.Uint64(b[24:])
		if (x|(x-low)|y|(y-low)|z|(z-low)|w|(w-low))&high != 0 {
			return false
		}
		b = b[32:]
	}
	for len(b) >= 8 {
		if x := binary.LittleEndian.Uint64(b); (x|(x-low))&high != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c < 0x20 || c >= 0x80 {
			return false
		}
	}
	return true
}

// appendJSON appends v as compact JSON: the whole body without the engine's keys when body
// is set. What msgp cannot render ends the JSON there, counted in s for the sink to log.
func (s *scratch) appendJSON(dst []byte, v record.Value, body bool) []byte {
	s.json.B = dst
	var err error
	if body {
		err = s.json.Body(v, 0)
	} else {
		err = s.json.Value(v)
	}
	if err != nil {
		s.jsonErrs, s.jsonErr = s.jsonErrs+1, err
	}
	return s.json.B
}

// appendTimestamp writes the time in UTC with microseconds: 2026-11-26T12:00:00.004110Z. The
// part up to the seconds is formatted once per second: a chunk's records mostly share it.
func (s *scratch) appendTimestamp(dst []byte, sec, nsec int64) []byte {
	if s.tsPrefix == nil || sec != s.tsSec {
		s.tsSec, s.tsPrefix = sec, time.Unix(sec, 0).UTC().AppendFormat(s.tsPrefix[:0], "2006-01-02T15:04:05.")
	}
	dst = append(dst, s.tsPrefix...)
	dst = appendMicros(dst, uint32(uint64(nsec)%1e9)/1000) // unsigned: cheaper divisions
	return append(dst, 'Z')
}

// appendMicros writes n (below 1,000,000) in six digits, zero-padded, two at a time: the
// microseconds, on every record.
func appendMicros(dst []byte, n uint32) []byte {
	const pairs = "00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899"
	a, b, c := n/10000, n/100%100, n%100
	return append(dst, pairs[2*a], pairs[2*a+1], pairs[2*b], pairs[2*b+1], pairs[2*c], pairs[2*c+1])
}
