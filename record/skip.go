package record

import (
	"encoding/binary"
	"errors"
)

var (
	// ErrShort means the chunk ends inside an object.
	ErrShort = errors.New("msgpack object runs past the end of the chunk")
	// ErrInvalid means a byte that starts no msgpack object (0xc1).
	ErrInvalid = errors.New("invalid msgpack type byte 0xc1")
)

// fixedLen is the whole size of the objects whose size the type byte alone gives: nil, bool,
// numbers and fixext. Zero means the size needs more than the type byte.
var fixedLen = [256]uint8{
	0xc0: 1, 0xc2: 1, 0xc3: 1,
	0xca: 5, 0xcb: 9,
	0xcc: 2, 0xcd: 3, 0xce: 5, 0xcf: 9,
	0xd0: 2, 0xd1: 3, 0xd2: 5, 0xd3: 9,
	0xd4: 3, 0xd5: 4, 0xd6: 6, 0xd7: 10, 0xd8: 18,
}

// objectLen returns the size in bytes of the msgpack object at the start of b, checking that
// all of it lies within b. It walks nested maps and arrays with a counter instead of
// recursion: msgp.Skip does the same job at about twice the cost (BenchmarkObjectLen beside
// BenchmarkMsgpSkip), where decoding has a budget of a few hundred nanoseconds a record.
// FuzzObjectLen holds the two to the same answers.
// The loop ends within len(b) steps whatever the headers claim, since every object takes at
// least one byte.
func objectLen(b []byte) (int, error) { return skipObjects(b, 1) }

// skipObjects returns the size of the n consecutive msgpack objects at the start of b.
func skipObjects(b []byte, n int) (int, error) {
	i, pending := 0, n
	for pending > 0 {
		if i >= len(b) {
			return 0, ErrShort
		}
		c := b[i]
		pending--
		switch {
		case c <= 0x7f || c >= 0xe0: // fixint
			i++
		case c <= 0x8f: // fixmap
			pending += 2 * int(c&0x0f)
			i++
		case c <= 0x9f: // fixarray
			pending += int(c & 0x0f)
			i++
		case c <= 0xbf: // fixstr
			i += 1 + int(c&0x1f)
		case fixedLen[c] != 0:
			i += int(fixedLen[c])
		case c == 0xd9 && i+1 < len(b): // str8, the common long string
			i += 2 + int(b[i+1])
		case c == 0xdf && i+4 < len(b): // map32, which Fluent Bit writes for every map
			pending += 2 * int(binary.BigEndian.Uint32(b[i+1:]))
			i += 5
		default:
			n, hdr, items, err := sizedHeader(b[i:], c)
			if err != nil {
				return 0, err
			}
			i += hdr + n
			pending += items
		}
	}
	if i > len(b) {
		return 0, ErrShort
	}
	return i, nil
}

// sizedHeader reads the header of str, bin, ext, array and map objects with an explicit
// length: the payload bytes that follow the header, the header's size, and how many nested
// objects follow.
func sizedHeader(b []byte, c byte) (payload, hdr, items int, err error) {
	var lenBytes int
	switch c {
	case 0xc4, 0xd9, 0xc7: // bin8, str8, ext8
		lenBytes = 1
	case 0xc5, 0xda, 0xc8, 0xdc, 0xde: // bin16, str16, ext16, array16, map16
		lenBytes = 2
	case 0xc6, 0xdb, 0xc9, 0xdd, 0xdf: // bin32, str32, ext32, array32, map32
		lenBytes = 4
	default:
		return 0, 0, 0, ErrInvalid
	}
	if len(b) < 1+lenBytes {
		return 0, 0, 0, ErrShort
	}
	var n int
	switch lenBytes {
	case 1:
		n = int(b[1])
	case 2:
		n = int(binary.BigEndian.Uint16(b[1:]))
	default:
		n = int(binary.BigEndian.Uint32(b[1:]))
	}
	hdr = 1 + lenBytes
	switch c {
	case 0xc7, 0xc8, 0xc9: // ext: a type byte, then the payload
		return n, hdr + 1, 0, nil
	case 0xdc, 0xdd:
		return 0, hdr, n, nil
	case 0xde, 0xdf:
		return 0, hdr, 2 * n, nil
	}
	return n, hdr, 0, nil
}
